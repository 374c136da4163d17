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
    private final ServerSocket server;
    private Socket socket;
    private BufferedReader in;
    private OutputStream out;

    FakeAgent() throws IOException {
        server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        server.setSoTimeout(10_000);
    }

    int port() {
        return server.getLocalPort();
    }

    /** Takes the next connection and its hello, and answers it; returns the hello. */
    String accept(String answer) throws IOException {
        socket = server.accept();
        socket.setSoTimeout(10_000);
        in = new BufferedReader(new InputStreamReader(socket.getInputStream(),
                StandardCharsets.UTF_8));
        out = socket.getOutputStream();
        String hello = in.readLine();
        send(answer);
        return hello;
    }

    String accept() throws IOException {
        return accept("{\"ok\":true,\"agent\":\"fake\"}");
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
