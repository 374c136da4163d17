package io.sparkscope.listener;

import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;

/**
 * The listener's health line: what it sent and lost, its queue, reconnects, live-state evictions,
 * task events of untracked stages, zombie jobs reaped and Spark's own bus drops, so the agent knows when to reconcile
 * with Spark's REST API. Written when something in it changed, and at least every 10 s as a
 * heartbeat, so an agent's read idle timeout never cuts a quiet listener. Sender thread only.
 */
final class StatsLine {
    private final LineCounts counts;
    private final AtomicLong queueDropped;
    private final EventRing ring;
    private final LiveState live;
    private final AtomicLong untrackedTaskEvents;
    private final AtomicLong countersEvicted;
    private final LongSupplier jobsReaped;
    static final long HEARTBEAT_NANOS = 10_000_000_000L;

    private final BusDrops busDrops = new BusDrops();
    // The driver's log lines forwarded and dropped (rate, queue): none without a forwarder.
    private LongSupplier logLinesForwarded = () -> 0L;
    private LongSupplier logLinesDropped = () -> 0L;
    private long lastLogs = -1;

    private long lastData = -1;
    private long lastDropped = -1;
    private long lastQueue = -1;
    private long lastReconnects = -1;
    private long lastReaped = -1;
    private String lastBus = "";
    private boolean written;
    private long lastLineNanos;

    StatsLine(LineCounts counts, AtomicLong queueDropped, EventRing ring, LiveState live,
            AtomicLong untrackedTaskEvents, AtomicLong countersEvicted, LongSupplier jobsReaped) {
        this.counts = counts;
        this.queueDropped = queueDropped;
        this.ring = ring;
        this.live = live;
        this.untrackedTaskEvents = untrackedTaskEvents;
        this.countersEvicted = countersEvicted;
        this.jobsReaped = jobsReaped;
    }

    /** Reports the log forwarder's counts too. */
    void logs(LogForwarder forwarder) {
        logLinesForwarded = forwarder::forwarded;
        logLinesDropped = forwarder::dropped;
    }

    /** Every line lost: on the bus thread (a full queue) and on the sender thread. */
    long dropped() {
        return queueDropped.get() + counts.dropped;
    }

    /** Whether a line is due as a heartbeat at {@code nowNanos} (System.nanoTime()). */
    boolean heartbeatDue(long nowNanos) {
        return !written || nowNanos - lastLineNanos >= HEARTBEAT_NANOS;
    }

    /**
     * The stats line, or null when nothing it reports has changed since the last one and the
     * last one is less than 10 s old.
     */
    String next(long nowNanos) {
        long dropped = dropped();
        long queue = ring.size();
        String bus = busDrops.read();
        long reaped = jobsReaped.getAsLong();
        long logsDropped = logLinesDropped.getAsLong();
        if (counts.data == lastData && dropped == lastDropped && queue == lastQueue
                && counts.reconnects == lastReconnects && reaped == lastReaped
                && logsDropped == lastLogs && bus.equals(lastBus) && !heartbeatDue(nowNanos)) {
            return null;
        }
        written = true;
        lastLineNanos = nowNanos;
        lastData = counts.data;
        lastDropped = dropped;
        lastQueue = queue;
        lastReconnects = counts.reconnects;
        lastBus = bus;
        lastReaped = reaped;
        lastLogs = logsDropped;
        return new Json("SparkscopeListenerStats")
                .field("time", System.currentTimeMillis())
                .field("sent", counts.sent + counts.pending)
                .field("dropped", dropped)
                .field("queueSize", queue)
                .field("reconnects", counts.reconnects)
                .field("liveEvicted", live.evicted() + countersEvicted.get())
                .field("untrackedTaskEvents", untrackedTaskEvents.get())
                .field("jobsReaped", reaped)
                .field("logLinesForwarded", logLinesForwarded.getAsLong())
                .field("logLinesDropped", logsDropped)
                .raw("busDropped", bus)
                .end();
    }
}
