package io.sparkscope.listener;

import java.io.IOException;
import java.io.OutputStream;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;

/**
 * Writes to a non-blocking socket channel with a deadline. An agent that stops reading (stopped,
 * swapped out, or a network that black-holes packets) would otherwise hold the sender thread in
 * a blocking write forever; here the write gives up after the timeout and the connection is
 * treated as lost.
 */
final class ChannelOutput extends OutputStream {
    private final SocketChannel channel;
    private final long timeoutMs;
    private Selector selector;

    ChannelOutput(SocketChannel channel, long timeoutMs) {
        this.channel = channel;
        this.timeoutMs = timeoutMs;
    }

    @Override
    public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(b, off, len);
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        while (buf.hasRemaining()) {
            if (channel.write(buf) > 0) {
                continue;
            }
            long left = (deadline - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                throw new SocketTimeoutException("the agent took no data for " + timeoutMs + " ms");
            }
            awaitWritable(left);
        }
    }

    private void awaitWritable(long ms) throws IOException {
        if (selector == null) {
            selector = Selector.open();
            channel.register(selector, SelectionKey.OP_WRITE);
        }
        selector.select(ms);
        selector.selectedKeys().clear();
    }

    @Override
    public void close() throws IOException {
        if (selector != null) {
            selector.close();
        }
    }
}
