package io.sparkscope.listener;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The proofs of the listener handshake (protocol 3, docs/wire-protocol.md): each side shows it
 * knows the token with an HMAC-SHA256 that starts with the agent's nonce, then the listener's
 * (both 32 hex digits), then the application and run ids; the token never crosses the wire. The
 * agent proves first, so a listener tells nothing to an impostor, and no one can have the agent
 * compute a MAC over bytes of their choosing.
 */
final class Handshake {
    private static final SecureRandom RANDOM = new SecureRandom();

    private Handshake() {
    }

    /** 16 random bytes, hex. */
    static String nonce() {
        byte[] b = new byte[16];
        RANDOM.nextBytes(b);
        return hex(b);
    }

    /** {@code HMAC-SHA256(token, part\n part\n …)}, hex; each part ends with a newline. */
    static String proof(String token, String... parts) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(token.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            for (String p : parts) {
                mac.update(p.getBytes(StandardCharsets.UTF_8));
                mac.update((byte) '\n');
            }
            return hex(mac.doFinal());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }

    /** What an agent that knows the token answers to this listener's hello. */
    static String agentProof(String token, String appId, String runId, String nonce,
            String agentNonce) {
        return proof(token, "sparkscope-agent-3", agentNonce, nonce, appId, runId);
    }

    /** The agent's proof for this listener's hello: compared in constant time. */
    static boolean agentProved(String token, String appId, String runId, String nonce,
            String agentNonce, String proof) {
        String expected = agentProof(token, appId, runId, nonce, agentNonce);
        return MessageDigest.isEqual(expected.getBytes(StandardCharsets.UTF_8),
                proof.getBytes(StandardCharsets.UTF_8));
    }

    /** The listener's proof, answering the agent's nonce. */
    static String listenerProof(String token, String appId, String runId, String nonce,
            String agentNonce) {
        return proof(token, "sparkscope-listener-3", agentNonce, nonce, appId, runId);
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            sb.append(Character.forDigit((b >> 4) & 0xf, 16)).append(Character.forDigit(b & 0xf, 16));
        }
        return sb.toString();
    }
}
