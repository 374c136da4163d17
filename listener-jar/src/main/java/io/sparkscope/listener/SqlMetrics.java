package io.sparkscope.listener;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.spark.util.AccumulatorContext;
import org.apache.spark.util.AccumulatorV2;

/**
 * The SQL metrics of running SQL executions, coalesced: once per flush interval the driver's
 * accumulators of each live plan's operators are read (their merged totals, exactly what Spark's
 * SQL tab sums) and those that changed go out as one line per execution. Nothing of this runs on
 * the listener-bus thread: reading an accumulator costs it nothing. Sender thread only.
 */
final class SqlMetrics {
    /** Executions followed at once at most; the oldest is let go (and counted) beyond. */
    static final int MAX_EXECUTIONS = 256;

    private static final class Tracked {
        long[] ids;
        /** The value last sent per id; {@link Long#MIN_VALUE}: none sent yet. */
        long[] sent;
        /** Ids whose accumulator is gone (cleaned or collected): not asked for again. */
        boolean[] gone;
    }

    private final LinkedHashMap<Long, Tracked> live = new LinkedHashMap<>();
    private final AccumulatorLookup lookup;
    long evicted;

    /** Where an accumulator's current value is read: the driver's registry, or a test's. */
    interface AccumulatorLookup {
        /** The value, or {@link Long#MIN_VALUE} when the accumulator is no longer known. */
        long value(long id);
    }

    SqlMetrics() {
        this(SqlMetrics::driverValue);
    }

    SqlMetrics(AccumulatorLookup lookup) {
        this.lookup = lookup;
    }

    /**
     * An execution's plan, at its start or after an adaptive re-plan: from now on the metrics of
     * these ids are followed (values already sent for ids the new plan keeps are not resent).
     */
    void track(long executionId, long[] ids) {
        Tracked old = live.remove(executionId);
        Tracked t = new Tracked();
        t.ids = ids.clone();
        t.sent = new long[ids.length];
        t.gone = new boolean[ids.length];
        java.util.Arrays.fill(t.sent, Long.MIN_VALUE);
        if (old != null) {
            Map<Long, Long> before = new java.util.HashMap<>();
            for (int i = 0; i < old.ids.length; i++) {
                before.put(old.ids[i], old.sent[i]);
            }
            for (int i = 0; i < ids.length; i++) {
                t.sent[i] = before.getOrDefault(ids[i], Long.MIN_VALUE);
            }
        }
        live.put(executionId, t);
        if (live.size() > MAX_EXECUTIONS) {
            Iterator<Long> it = live.keySet().iterator();
            it.next();
            it.remove();
            evicted++;
        }
    }

    /** After a snapshot: every followed value goes out again with the next lines. */
    void resendAll() {
        for (Tracked t : live.values()) {
            java.util.Arrays.fill(t.sent, Long.MIN_VALUE);
        }
    }

    /** The lines for every followed execution whose metrics changed since they were last sent. */
    void write(Connector agent, long now) {
        for (Map.Entry<Long, Tracked> e : live.entrySet()) {
            String line = line(e.getKey(), e.getValue(), now);
            if (line != null) {
                agent.writeLine(line);
            }
        }
    }

    /** The execution ended: its final values (if the agent is there), then it is let go. */
    void end(long executionId, Connector agent, long now) {
        Tracked t = live.remove(executionId);
        if (t != null && agent.connected()) {
            String line = line(executionId, t, now);
            if (line != null) {
                agent.writeLine(line);
            }
        }
    }

    int size() {
        return live.size();
    }

    /** One line of the changed values, or null when none changed. */
    private String line(long executionId, Tracked t, long now) {
        StringBuilder values = null;
        for (int i = 0; i < t.ids.length; i++) {
            if (t.gone[i]) {
                continue;
            }
            long v = lookup.value(t.ids[i]);
            if (v == Long.MIN_VALUE) {
                t.gone[i] = true;
                continue;
            }
            // Spark's size and time metrics start at -1: not updated by any task yet.
            if (v < 0 || v == t.sent[i]) {
                continue;
            }
            t.sent[i] = v;
            values = values == null ? new StringBuilder("[") : values.append(',');
            values.append('[').append(t.ids[i]).append(',').append(v).append(']');
        }
        if (values == null) {
            return null;
        }
        return new Json("SparkscopeSqlMetrics").field("time", now)
                .field("executionId", executionId).raw("values", values.append(']').toString())
                .end();
    }

    String line(long executionId, long now) {
        Tracked t = live.get(executionId);
        return t == null ? null : line(executionId, t, now);
    }

    private static long driverValue(long id) {
        try {
            scala.Option<AccumulatorV2<?, ?>> acc = AccumulatorContext.get(id);
            if (acc.isEmpty()) {
                return Long.MIN_VALUE;
            }
            Object v = acc.get().value();
            return v instanceof Long ? (Long) v : Long.MIN_VALUE;
        } catch (RuntimeException e) {
            return Long.MIN_VALUE;
        }
    }
}
