package io.sparkscope.listener;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

/** The agent's side of the wire protocol, as little as the tests need. */
final class FakeAgent implements AutoCloseable {
    static final String TOKEN = "test-token";

    private final ServerSocket server;
    private Socket socket;
    private BufferedReader in;
    private OutputStream out;

    FakeAgent() throws IOException {
        server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        server.setSoTimeout(10_000);
    }

    /** An agent serving TLS with the certificate in the PKCS#12 keystore {@code p12}. */
    FakeAgent(java.nio.file.Path p12) throws Exception {
        java.security.KeyStore ks = java.security.KeyStore.getInstance("PKCS12");
        try (java.io.InputStream in = java.nio.file.Files.newInputStream(p12)) {
            ks.load(in, "changeit".toCharArray());
        }
        javax.net.ssl.KeyManagerFactory kmf = javax.net.ssl.KeyManagerFactory.getInstance(
                javax.net.ssl.KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, "changeit".toCharArray());
        javax.net.ssl.SSLContext ctx = javax.net.ssl.SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        server = ctx.getServerSocketFactory().createServerSocket(0, 50,
                InetAddress.getLoopbackAddress());
        server.setSoTimeout(10_000);
    }

    int port() {
        return server.getLocalPort();
    }

    /** Whether a listener connects within {@code ms} (the connection is then closed). */
    boolean connectsWithin(int ms) throws IOException {
        int before = server.getSoTimeout();
        server.setSoTimeout(ms);
        try (java.net.Socket s = server.accept()) {
            return s != null;
        } catch (java.net.SocketTimeoutException e) {
            return false;
        } finally {
            server.setSoTimeout(before);
        }
    }

    /** Takes the next connection and its hello, and answers it; returns the hello. */
    String accept(String answer) throws IOException {
        String hello = take();
        send(answer);
        return hello;
    }

    /** The whole handshake, as the real agent with {@link #TOKEN} does it; returns the hello. */
    String accept() throws IOException {
        String hello = take();
        String appId = field(hello, "appId");
        String runId = field(hello, "runId");
        String nonce = field(hello, "nonce");
        String mine = Handshake.nonce();
        String proof = Handshake.agentProof(TOKEN, appId, runId, nonce, mine);
        send("{\"ok\":true,\"agent\":\"fake\",\"nonce\":\"" + mine + "\",\"proof\":\"" + proof
                + "\"}");
        String theirs = readLine();
        String expected = Handshake.listenerProof(TOKEN, appId, runId, nonce, mine);
        if (!theirs.contains("\"proof\":\"" + expected + "\"")) {
            throw new IOException("the listener's proof is wrong: " + theirs);
        }
        send("{\"ok\":true,\"welcome\":true}");
        return hello;
    }

    /** An agent without a token (--allow-anonymous-listeners): a challenge with no proof. */
    String acceptWithoutToken() throws IOException {
        String hello = take();
        send("{\"ok\":true,\"agent\":\"anonymous\",\"nonce\":\"" + Handshake.nonce() + "\"}");
        readLine(); // the listener's (empty) proof
        send("{\"ok\":true,\"welcome\":true}");
        return hello;
    }

    /** An agent that does not know the token: a challenge with a made-up proof. */
    String acceptAsImpostor() throws IOException {
        String hello = take();
        send("{\"ok\":true,\"agent\":\"impostor\",\"nonce\":\"" + Handshake.nonce()
                + "\",\"proof\":\"" + "0".repeat(64) + "\"}");
        return hello;
    }

    private String take() throws IOException {
        socket = server.accept();
        socket.setSoTimeout(10_000);
        in = new BufferedReader(new InputStreamReader(socket.getInputStream(),
                StandardCharsets.UTF_8));
        out = socket.getOutputStream();
        return readLine();
    }

    /** A string field of a flat JSON line. */
    static String field(String line, String name) {
        String key = "\"" + name + "\":\"";
        int at = line.indexOf(key);
        if (at < 0) {
            return "";
        }
        int start = at + key.length();
        return line.substring(start, line.indexOf('"', start));
    }

    /**
     * Everything the listener sends until it closes the connection (a reset, when it closed with
     * our last line unread, is a close too).
     */
    String readToEnd() throws IOException {
        StringBuilder all = new StringBuilder();
        try {
            String l;
            while ((l = in.readLine()) != null) {
                all.append(l).append('\n');
            }
        } catch (java.net.SocketException e) {
            if (!String.valueOf(e.getMessage()).contains("reset")) {
                throw e;
            }
        }
        return all.toString();
    }

    void send(String line) throws IOException {
        out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** The lines between the snapshot's start and end lines. */
    List<String> readSnapshot() throws IOException {
        readUntil(l -> l.contains("\"SparkscopeSnapshotStart\""));
        List<String> lines = new ArrayList<>();
        while (true) {
            String l = readLine();
            if (l.contains("\"SparkscopeSnapshotEnd\"")) {
                return lines;
            }
            lines.add(l);
        }
    }

    String readUntil(Predicate<String> wanted) throws IOException {
        while (true) {
            String l = readLine();
            if (wanted.test(l)) {
                return l;
            }
        }
    }

    private String readLine() throws IOException {
        String l = in.readLine();
        if (l == null) {
            throw new IOException("the listener closed the connection");
        }
        return l;
    }

    /** Stops reading without closing: the listener's writes pile up. */
    void stall() {
        in = null;
    }

    /**
     * Whether the listener has closed its side: what it sent before is read first, then the end
     * must follow within {@code ms}. Reading makes room for the listener's writes, so a test
     * that stalled the agent waits before asking.
     */
    boolean closedByListener(int ms) throws IOException {
        socket.setSoTimeout(ms);
        try {
            while (socket.getInputStream().read() >= 0) {
                // what the listener still sent
            }
            return true;
        } catch (SocketTimeoutException e) {
            return false;
        }
    }

    void drop() throws IOException {
        socket.close();
    }

    @Override
    public void close() throws IOException {
        if (socket != null) {
            socket.close();
        }
        server.close();
    }
}
