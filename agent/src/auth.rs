//! The credential primitives every surface of the agent uses: a token that is compared in
//! constant time and never printed, one way of reading a bearer token, and the HMAC of the
//! listener handshake. Who a stream subscriber is lives beside the stream
//! (`publish::stream::identity`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// A token the agent expects. Compared in constant time; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// `None` for an empty or absent value: an empty token would let anyone in.
    pub fn new(value: Option<impl AsRef<str>>) -> Option<Secret> {
        value
            .map(|v| v.as_ref().trim().to_owned())
            .filter(|v| !v.is_empty())
            .map(|v| Secret(Arc::from(v)))
    }

    /// A token of someone else's (Spark Connect's) as a flag gives it: only an empty one is
    /// refused.
    pub fn parse(value: &str) -> Result<Secret, String> {
        Secret::new(Some(crate::flags::non_empty(value)?))
            .ok_or_else(|| "the token is empty".to_owned())
    }

    /// One of sparkscope's own tokens as a flag gives it: strong enough that guessing it from a
    /// proof it signed is hopeless ([`weakness`]).
    pub fn parse_own(value: &str) -> Result<Secret, String> {
        let secret = Secret::parse(value)?;
        match weakness(secret.expose()) {
            Some(why) => Err(why),
            None => Ok(secret),
        }
    }

    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }

    /// The value itself, for sending it on (Spark Connect's bearer token) or keying an HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The fewest characters one of sparkscope's tokens may have.
pub const MIN_TOKEN_CHARS: usize = 16;
/// The fewest different characters among them.
const MIN_DISTINCT_CHARS: usize = 8;

/// Why a token is too weak to stand for anyone, if it is: one that proves itself by HMAC can be
/// guessed offline from a proof. 16 random bytes in hex (`head -c 16 /dev/urandom | xxd -p`) are
/// plenty.
pub fn weakness(token: &str) -> Option<String> {
    let chars = token.chars().count();
    let mut distinct: Vec<char> = token.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if chars < MIN_TOKEN_CHARS || distinct.len() < MIN_DISTINCT_CHARS {
        Some(format!(
            "the token is too weak to guess-proof: it needs at least {MIN_TOKEN_CHARS} \
             characters, {MIN_DISTINCT_CHARS} of them different (e.g. the output of \
             `head -c 16 /dev/urandom | xxd -p`)"
        ))
    } else {
        None
    }
}

/// Whether `given` passes where `expected` is required; no expected token lets anyone pass (the
/// agent starts that way only with an `--allow-anonymous-…` flag).
pub fn allows(expected: Option<&Secret>, given: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(secret) => given.is_some_and(|g| secret.matches(g)),
    }
}

/// The token of an `Authorization` header value of the form `Bearer <token>`.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization?.strip_prefix("Bearer ")
}

/// The bearer token of an HTTP request's headers.
pub fn bearer_in(headers: &axum::http::HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `HMAC-SHA256(key, parts…)`, hex: the listener handshake's proofs.
pub fn hmac_hex(key: &Secret, parts: &[&str]) -> String {
    // HMAC takes keys of any length; the error exists only for fixed-size MACs.
    #[allow(clippy::expect_used)]
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key");
    for p in parts {
        mac.update(p.as_bytes());
        mac.update(b"\n");
    }
    hex(&mac.finalize().into_bytes())
}

/// 16 random bytes as 32 lower-case hex digits: one side's half of a handshake.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: the clock still makes each nonce one of its kind.
        bytes.copy_from_slice(
            &std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                .to_le_bytes(),
        );
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tokens_are_no_tokens_and_checks_are_exact() {
        assert!(Secret::new(Some("")).is_none());
        assert!(Secret::new(None::<String>).is_none());
        let s = Secret::new(Some("t0k")).expect("secret");
        assert!(allows(Some(&s), Some("t0k")));
        assert!(!allows(Some(&s), Some("t0")));
        assert!(!allows(Some(&s), Some("t0kk")));
        assert!(!allows(Some(&s), None));
        assert!(allows(None, None));
        assert_eq!(format!("{s:?}"), "Secret(…)");
    }

    #[test]
    fn weak_tokens_are_refused_with_the_reason() {
        for weak in [
            "",
            "lt",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abcabcabcabcabcabc",
            "0123456789abcde",
        ] {
            assert!(weakness(weak).is_some(), "{weak:?}");
        }
        assert!(weakness("0123456789abcdef").is_none());
        assert!(weakness("9f86d081884c7d65").is_none());
        let refused = Secret::parse_own("password").expect_err("weak");
        assert!(refused.contains("at least 16"), "{refused}");
        assert!(
            Secret::parse("password").is_ok(),
            "Spark's own tokens are Spark's business"
        );
    }

    #[test]
    fn bearer_needs_the_scheme() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = Secret::new(Some("Jefe")).expect("key");
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).expect("mac");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(hmac_hex(&key, &["a", "b"]), hmac_hex(&key, &["ab"]));
    }
}
