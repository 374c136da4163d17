package io.sparkscope.listener;

import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The connection to the agent: connects (over TLS when asked), says hello, proves and checks the
 * token, backs off after a refusal or a lost connection, and writes lines, counting each as sent
 * or dropped. Sender thread only.
 */
final class Connector {
    private static final Logger LOG = LoggerFactory.getLogger(Connector.class);

    private static final int CONNECT_TIMEOUT_MS = 1_000;
    private static final int HELLO_TIMEOUT_MS = 5_000;
    private static final int MAX_ANSWER_BYTES = 64 * 1024;
    private static final long MIN_BACKOFF_MS = 100;
    /**
     * Reconnect attempts are at most this far apart, so the listener is back within a second of
     * the agent's return; a refused connect costs next to nothing.
     */
    private static final long MAX_BACKOFF_MS = 1_000;
    /** A connection that lasted this long resets the backoff; a shorter one does not. */
    private static final long STABLE_CONNECTION_NANOS = 5_000_000_000L;
    private static final int WRITE_BUFFER = 64 * 1024;

    private final ListenerConfig config;
    private final Hello hello;
    private final LineCounts counts;
    private final ObjectMapper mapper = new ObjectMapper();
    /** TLS to the agent, when spark.sparkscope.tls.trustCert names what to trust. */
    private final AgentTls tls;
    private final boolean usable;

    private AgentLink link;
    private OutputStream out;
    private long connectedAtNanos;
    private long nextConnectNanos;
    private long backoffMs = MIN_BACKOFF_MS;
    private boolean everConnected;
    private boolean unavailableLogged;
    private String lastRefusal;

    Connector(ListenerConfig config, Hello hello, LineCounts counts) {
        this.config = config;
        this.hello = hello;
        this.counts = counts;
        AgentTls t = null;
        boolean ok = true;
        if (config.unusable != null) {
            // Never fall back to another token, or to none: nothing is sent.
            LOG.error("sparkscope: {}; the listener will not connect", config.unusable);
            ok = false;
        } else if (!config.tlsTrust.isEmpty()) {
            try {
                t = new AgentTls(config.tlsTrust);
            } catch (IOException | java.security.GeneralSecurityException e) {
                // Never fall back to plain text when TLS was asked for: nothing is sent then.
                LOG.error("sparkscope: cannot use {} ({}); the listener will not connect",
                        ListenerConfig.TLS_TRUST, e.toString());
                ok = false;
            }
        }
        this.tls = t;
        this.usable = ok;
    }

    /**
     * False when TLS was asked for and cannot be had, or a token file was named and cannot be
     * read: the sender must then send nothing.
     */
    boolean usable() {
        return usable;
    }

    /** Whether the agent is away and the backoff since the last attempt has passed. */
    boolean due(long nowNanos) {
        return link == null && nowNanos - nextConnectNanos >= 0;
    }

    /** Whether lines can be written; while not, event and progress lines count as dropped. */
    boolean connected() {
        return out != null;
    }

    /**
     * Connects, says hello and runs the handshake. True when the agent accepted the listener:
     * its snapshot must follow at once. Otherwise the next attempt waits for the backoff.
     */
    boolean connect() {
        Socket sock = null;
        SocketChannel ch = null;
        try {
            if (tls != null) {
                sock = tls.connect(config.agentAddress(), config.agentHost, CONNECT_TIMEOUT_MS,
                        HELLO_TIMEOUT_MS);
            } else {
                ch = SocketChannel.open();
                ch.socket().connect(config.agentAddress(), CONNECT_TIMEOUT_MS);
                ch.socket().setTcpNoDelay(true);
                ch.socket().setSoTimeout(HELLO_TIMEOUT_MS);
                sock = ch.socket();
            }
            OutputStream o = new BufferedOutputStream(sock.getOutputStream(), 4096);
            InputStream in = sock.getInputStream();
            String nonce = Handshake.nonce();
            String appId = hello.appId();
            o.write(hello.line(appId, nonce).getBytes(StandardCharsets.UTF_8));
            o.write('\n');
            o.flush();
            JsonNode challenge = mapper.readTree(readLine(in));
            if (refused(challenge, sock)) {
                return false;
            }
            String agentNonce = challenge.path("nonce").asText("");
            String runId = hello.runId;
            if (!config.token.isEmpty()) {
                // The agent proves it knows the token before anything is said: an impostor on
                // the agent's port learns nothing and can send no command.
                String proof = challenge.path("proof").asText("");
                if (!Handshake.agentProved(config.token, appId, runId, nonce, agentNonce, proof)) {
                    String why = "it could not prove it knows the token: not an agent of ours";
                    if (!why.equals(lastRefusal)) {
                        lastRefusal = why;
                        LOG.error("sparkscope: the peer at {} is refused: {}; retrying with "
                                + "backoff", config.agentString(), why);
                    }
                    closeQuietly(sock);
                    backOff();
                    return false;
                }
            }
            String mine = config.token.isEmpty() ? ""
                    : Handshake.listenerProof(config.token, appId, runId, nonce, agentNonce);
            o.write(new Json("SparkscopeProof").field("proof", mine).end()
                    .getBytes(StandardCharsets.UTF_8));
            o.write('\n');
            o.flush();
            JsonNode node = mapper.readTree(readLine(in));
            if (refused(node, sock)) {
                return false;
            }
            link = tls != null
                    ? new AgentLink.Tls((javax.net.ssl.SSLSocket) sock, config.writeTimeoutMs,
                            WRITE_BUFFER)
                    : new AgentLink.Plain(ch, config.writeTimeoutMs, WRITE_BUFFER);
            out = link.out();
            connectedAtNanos = System.nanoTime();
            if (everConnected) {
                counts.reconnects++;
            }
            everConnected = true;
            unavailableLogged = false;
            lastRefusal = null;
            LOG.info("sparkscope: connected to agent {}{} ({})", config.agentString(),
                    tls != null ? " over TLS" : "", challenge.path("agent").asText("?"));
            counts.sent++; // the hello
            return true;
        } catch (IOException | RuntimeException e) {
            closeQuietly(sock);
            if (!unavailableLogged) {
                unavailableLogged = true;
                LOG.warn("sparkscope: agent {} unavailable ({}); retrying with backoff up to {} s, "
                        + "dropping lines meanwhile", config.agentString(), e.toString(),
                        MAX_BACKOFF_MS / 1000);
            }
            backOff();
            return false;
        }
    }

    /** Whether the agent said no (logged once per distinct reason); the connection is closed. */
    private boolean refused(JsonNode node, Socket ch) {
        if (node != null && node.path("ok").asBoolean(false)) {
            return false;
        }
        String error = node == null ? "empty answer" : node.path("error").asText("no reason given");
        if (!error.equals(lastRefusal)) {
            lastRefusal = error;
            LOG.warn("sparkscope: agent {} refused the listener: {} (retrying with backoff)",
                    config.agentString(), error);
        }
        closeQuietly(ch);
        backOff();
        return true;
    }

    private void backOff() {
        nextConnectNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoffMs);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }

    private static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream(128);
        while (buf.size() < MAX_ANSWER_BYTES) {
            int b = in.read();
            if (b < 0) {
                throw new EOFException("agent closed the connection during the hello");
            }
            if (b == '\n') {
                return buf.toString(StandardCharsets.UTF_8);
            }
            buf.write(b);
        }
        throw new IOException("hello answer longer than " + MAX_ANSWER_BYTES + " bytes");
    }

    /**
     * What the agent sent since the last poll, without blocking: its complete command lines. EOF
     * means the agent went away; noticing it before a flush keeps us from writing a batch into a
     * dead socket.
     */
    List<String> poll() {
        if (link == null) {
            return List.of();
        }
        try {
            return link.poll();
        } catch (IOException | RuntimeException e) {
            connectionLost(e);
            return List.of();
        }
    }

    /** An event or progress line: counted as dropped when the agent is away. */
    void writeLine(String line) {
        if (out == null) {
            counts.dropped++;
            return;
        }
        counts.data++;
        write(line);
    }

    /** A line of the protocol's own (snapshot bounds, stats, command results). */
    void write(String line) {
        try {
            out.write(line.getBytes(StandardCharsets.UTF_8));
            out.write('\n');
            counts.pending++;
        } catch (IOException | RuntimeException e) {
            counts.dropped++;
            connectionLost(e);
        }
    }

    void flush() {
        if (out == null) {
            return;
        }
        try {
            out.flush();
            counts.sent += counts.pending;
            counts.pending = 0;
        } catch (IOException | RuntimeException e) {
            connectionLost(e);
        }
    }

    private void connectionLost(Exception e) {
        counts.dropped += counts.pending;
        counts.pending = 0;
        LOG.warn("sparkscope: lost connection to agent {} ({}); reconnecting", config.agentString(),
                e.toString());
        close(false); // what is buffered would go into a dead socket
        // A connection closed right after its hello (an agent refusing, restarting, or a wrong
        // peer) must not turn into a tight reconnect loop.
        if (System.nanoTime() - connectedAtNanos >= STABLE_CONNECTION_NANOS) {
            backoffMs = MIN_BACKOFF_MS;
        }
        backOff();
    }

    /** Closes the connection; {@code graceful}: what is buffered is flushed first. */
    void close(boolean graceful) {
        if (out != null && graceful) {
            try {
                out.flush();
                counts.sent += counts.pending;
                counts.pending = 0;
            } catch (IOException | RuntimeException ignored) {
                // counted as dropped just below
            }
        }
        counts.dropped += counts.pending; // zero after a successful flush
        counts.pending = 0;
        out = null;
        if (link != null) {
            try {
                link.close();
            } catch (IOException ignored) {
                // nothing useful to do
            }
        }
        link = null;
    }

    private static void closeQuietly(java.io.Closeable c) {
        if (c != null) {
            try {
                c.close();
            } catch (IOException ignored) {
                // nothing useful to do
            }
        }
    }
}
