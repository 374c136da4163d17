//! The stream's handshake, for a notebook that holds one of the agent's own tokens (the shared
//! one, or its user's in the token file): the notebook names the token by its key id, the agent
//! proves it knows the token first, then the notebook proves it too. The token never crosses
//! the wire, and a program that took the agent's port while it was down learns nothing it could
//! use (docs/streaming-api.md). Both sides' proofs are here; the Rust tests speak the
//! notebook's.

use super::identity::{Credential, Principal, SubscriberAuth};
use crate::auth::{self, Secret};
use sparkscope_proto::sparkscope::v1 as pb;

/// A nonce: 16 random bytes, as 32 lower-case hex digits.
pub const NONCE_HEX: usize = 32;

/// What the agent answers to a hello, to prove it knows the token.
pub fn agent_proof(token: &Secret, agent_nonce: &str, hello: &pb::StreamHello) -> String {
    proof(token, "sparkscope-agent-stream-1", agent_nonce, hello)
}

/// What the notebook answers to the agent's challenge.
pub fn notebook_proof(token: &Secret, agent_nonce: &str, hello: &pb::StreamHello) -> String {
    proof(token, "sparkscope-notebook-1", agent_nonce, hello)
}

fn proof(token: &Secret, role: &str, agent_nonce: &str, hello: &pb::StreamHello) -> String {
    auth::hmac_hex(token, &[role, agent_nonce, &hello.nonce, &hello.key_id])
}

fn is_nonce(s: &str) -> bool {
    s.len() == NONCE_HEX
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The agent's side, step by step: the challenge for a hello, then the check of the proof.
pub struct Handshake {
    hello: pb::StreamHello,
    agent_nonce: String,
    principal: Principal,
    token: Secret,
}

impl Handshake {
    /// Answers a hello, or says why not (a malformed hello, a token the agent does not hold).
    pub fn start(
        auth: &SubscriberAuth,
        hello: pb::StreamHello,
    ) -> Result<(Handshake, pb::StreamChallenge), String> {
        if !is_nonce(&hello.nonce) {
            return Err(format!(
                "the hello's nonce must be {NONCE_HEX} lower-case hex digits"
            ));
        }
        let Some((principal, token)) = auth.key(&hello.key_id) else {
            return Err("no token of this agent has that key id".to_owned());
        };
        let agent_nonce = auth::new_nonce();
        let challenge = pb::StreamChallenge {
            proof: agent_proof(&token, &agent_nonce, &hello),
            nonce: agent_nonce.clone(),
        };
        Ok((
            Handshake {
                hello,
                agent_nonce,
                principal,
                token,
            },
            challenge,
        ))
    }

    /// Who the notebook is, once its proof holds.
    pub fn finish(self, proof: &pb::StreamProof) -> Option<(Principal, Credential)> {
        let expected = notebook_proof(&self.token, &self.agent_nonce, &self.hello);
        auth::constant_time_eq(expected.as_bytes(), proof.proof.as_bytes())
            .then_some((self.principal, Credential::Token(self.token)))
    }
}
