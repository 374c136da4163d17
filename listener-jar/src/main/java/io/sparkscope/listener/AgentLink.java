package io.sparkscope.listener;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

import javax.net.ssl.SSLSocket;

/**
 * An established connection to the agent, after the handshake: where lines are written (with a
 * deadline: an agent that stops reading is given up on), and where the agent's command lines are
 * picked up without ever blocking the sender thread.
 */
abstract class AgentLink implements Closeable {
    static final int MAX_COMMAND_BYTES = 64 * 1024;

    /** Where lines go; writes that make no progress for the write timeout fail. */
    abstract OutputStream out();

    /** The agent's complete command lines since the last call; EOFException once it closed. */
    abstract List<String> poll() throws IOException;

    /**
     * Plain TCP: a non-blocking channel, written through {@link ChannelOutput} (its own deadline)
     * and read without blocking.
     */
    static final class Plain extends AgentLink {
        private final SocketChannel channel;
        private final OutputStream out;
        private final ByteBuffer buffer = ByteBuffer.allocate(4096);
        private final ByteArrayOutputStream partial = new ByteArrayOutputStream();

        Plain(SocketChannel channel, long writeTimeoutMs, int bufferSize) throws IOException {
            channel.configureBlocking(false);
            this.channel = channel;
            this.out = new java.io.BufferedOutputStream(new ChannelOutput(channel, writeTimeoutMs),
                    bufferSize);
        }

        @Override
        OutputStream out() {
            return out;
        }

        @Override
        List<String> poll() throws IOException {
            List<String> lines = new ArrayList<>(0);
            int n;
            do {
                buffer.clear();
                n = channel.read(buffer);
                for (int i = 0; i < Math.max(n, 0); i++) {
                    byte b = buffer.get(i);
                    if (b == '\n') {
                        lines.add(partial.toString(StandardCharsets.UTF_8));
                        partial.reset();
                    } else if (partial.size() < MAX_COMMAND_BYTES) {
                        partial.write(b);
                    }
                }
            } while (n > 0);
            if (n < 0) {
                throw new EOFException("agent closed the connection");
            }
            return lines;
        }

        @Override
        public void close() throws IOException {
            channel.close();
        }
    }

    /**
     * TLS: a blocking SSL socket. A reader thread collects the agent's lines; a watchdog closes
     * the socket when a write has made no progress for the write timeout, which fails the write.
     */
    static final class Tls extends AgentLink {
        private final SSLSocket socket;
        private final OutputStream out;
        private final ConcurrentLinkedQueue<String> received = new ConcurrentLinkedQueue<>();
        private volatile boolean ended;
        private volatile long writeDeadline; // System.nanoTime() + timeout while writing, else 0

        Tls(SSLSocket socket, long writeTimeoutMs, int bufferSize) throws IOException {
            this.socket = socket;
            socket.setSoTimeout(0);
            InputStream in = socket.getInputStream();
            OutputStream raw = socket.getOutputStream();
            long timeoutNanos = writeTimeoutMs * 1_000_000L;
            this.out = new java.io.BufferedOutputStream(new OutputStream() {
                @Override
                public void write(int b) throws IOException {
                    write(new byte[] {(byte) b}, 0, 1);
                }

                @Override
                public void write(byte[] b, int off, int len) throws IOException {
                    writeDeadline = System.nanoTime() + timeoutNanos;
                    try {
                        raw.write(b, off, len);
                    } finally {
                        writeDeadline = 0;
                    }
                }

                @Override
                public void flush() throws IOException {
                    writeDeadline = System.nanoTime() + timeoutNanos;
                    try {
                        raw.flush();
                    } finally {
                        writeDeadline = 0;
                    }
                }
            }, bufferSize);
            Thread reader = new Thread(() -> read(in), "sparkscope-agent-reader");
            reader.setDaemon(true);
            reader.start();
            Thread watchdog = new Thread(this::watch, "sparkscope-write-watchdog");
            watchdog.setDaemon(true);
            watchdog.start();
        }

        private void read(InputStream in) {
            ByteArrayOutputStream partial = new ByteArrayOutputStream();
            try {
                int b;
                while ((b = in.read()) >= 0) {
                    if (b == '\n') {
                        received.add(partial.toString(StandardCharsets.UTF_8));
                        partial.reset();
                    } else if (partial.size() < MAX_COMMAND_BYTES) {
                        partial.write(b);
                    }
                }
            } catch (IOException e) {
                // the connection is gone: said by ended
            } finally {
                ended = true;
            }
        }

        private void watch() {
            while (!ended && !socket.isClosed()) {
                long deadline = writeDeadline;
                if (deadline != 0 && System.nanoTime() - deadline > 0) {
                    closeQuietly(socket); // fails the blocked write
                    return;
                }
                try {
                    Thread.sleep(100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }

        @Override
        OutputStream out() {
            return out;
        }

        @Override
        List<String> poll() throws IOException {
            List<String> lines = new ArrayList<>(0);
            String l;
            while ((l = received.poll()) != null) {
                lines.add(l);
            }
            if (lines.isEmpty() && ended) {
                throw new EOFException("agent closed the connection");
            }
            return lines;
        }

        @Override
        public void close() throws IOException {
            ended = true;
            socket.close();
        }
    }

    static void closeQuietly(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // nothing useful to do
        }
    }
}
