package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.SparkConf;
import org.apache.spark.executor.ExecutorMetrics;
import org.apache.spark.scheduler.SparkListenerExecutorMetricsUpdate;

/**
 * The executors' memory, from their heartbeats ({@code SparkListenerExecutorMetricsUpdate}): each
 * heartbeat carries, per running stage attempt and for the whole executor (stage -1), the peaks
 * of its memory metrics since the previous one. This keeps each executor's peaks since it started
 * (what Spark's {@code /executors} calls {@code peakMemoryMetrics}) and sends them with the
 * heartbeat's per-stage peaks as one line in the event log's shape, plus the heap the executor's
 * JVM may grow to. A snapshot resends the kept peaks, so a restarted agent knows them at once.
 * The accumulator updates a heartbeat also carries never leave the driver. Sender thread only.
 */
final class ExecutorPeaks {
    /** The metrics sent, by Spark's names ({@code ExecutorMetricType}). */
    static final String[] METRICS = {
        "JVMHeapMemory", "JVMOffHeapMemory", "OnHeapStorageMemory", "OffHeapStorageMemory",
        "TotalGCTime",
    };
    static final String DRIVER = "driver";

    private final LinkedHashMap<String, long[]> peaks = new LinkedHashMap<>();
    private final int cap;
    private final long driverMaxHeap;
    private final long executorMemory;
    long evicted;

    /**
     * {@code driverMaxHeap}: this JVM's maximum heap (the driver's, and in local mode the
     * executor's); {@code executorMemory}: spark.executor.memory, what other executors' heaps are.
     */
    ExecutorPeaks(int cap, long driverMaxHeap, long executorMemory) {
        this.cap = cap;
        this.driverMaxHeap = driverMaxHeap;
        this.executorMemory = executorMemory;
    }

    static ExecutorPeaks of(SparkConf conf, int cap) {
        long executorMemory;
        try {
            executorMemory = conf.getSizeAsBytes("spark.executor.memory", "1g");
        } catch (RuntimeException e) {
            executorMemory = 1L << 30;
        }
        return new ExecutorPeaks(cap, Runtime.getRuntime().maxMemory(), executorMemory);
    }

    /** A heartbeat: its line, or null when it carries no executor metrics. */
    String update(SparkListenerExecutorMetricsUpdate e) {
        String id = e.execId();
        List<long[]> stages = new ArrayList<>();
        long[] whole = new long[METRICS.length];
        boolean any = false;
        scala.collection.Iterator<?> it = e.executorUpdates().iterator();
        while (it.hasNext()) {
            scala.Tuple2<?, ?> kv = (scala.Tuple2<?, ?>) it.next();
            scala.Tuple2<?, ?> key = (scala.Tuple2<?, ?>) kv._1();
            long[] values = values((ExecutorMetrics) kv._2());
            int stage = (Integer) key._1();
            int attempt = (Integer) key._2();
            max(whole, values);
            any = true;
            if (stage >= 0) {
                long[] row = new long[METRICS.length + 2];
                row[0] = stage;
                row[1] = attempt;
                System.arraycopy(values, 0, row, 2, METRICS.length);
                stages.add(row);
            }
        }
        if (!any) {
            return null;
        }
        long[] kept = peaks.remove(id); // re-inserted last: the oldest heartbeat goes first
        if (kept == null) {
            kept = new long[METRICS.length];
        }
        max(kept, whole);
        peaks.put(id, kept);
        if (peaks.size() > cap) {
            Iterator<String> oldest = peaks.keySet().iterator();
            oldest.next();
            oldest.remove();
            evicted++;
        }
        return line(id, kept, stages);
    }

    /** The executor is gone: its peaks with it. */
    void remove(String executorId) {
        peaks.remove(executorId);
    }

    /** For a snapshot: one line per executor with its peaks since it started. */
    List<String> lines() {
        List<String> out = new ArrayList<>(peaks.size());
        for (Map.Entry<String, long[]> e : peaks.entrySet()) {
            out.add(line(e.getKey(), e.getValue(), List.of()));
        }
        return out;
    }

    int size() {
        return peaks.size();
    }

    long maxHeap(String executorId) {
        return DRIVER.equals(executorId) ? driverMaxHeap : executorMemory;
    }

    private String line(String id, long[] whole, List<long[]> stages) {
        StringBuilder updates = new StringBuilder("[").append(entry(-1, -1, whole, 0));
        for (long[] row : stages) {
            updates.append(',').append(entry(row[0], row[1], row, 2));
        }
        return new Json("SparkListenerExecutorMetricsUpdate")
                .field("Executor ID", id)
                .raw("Metrics Updated", "[]")
                .raw("Executor Metrics Updated", updates.append(']').toString())
                .field("Max Heap Memory", maxHeap(id))
                .end();
    }

    private static String entry(long stage, long attempt, long[] values, int from) {
        Json metrics = new Json();
        for (int i = 0; i < METRICS.length; i++) {
            metrics.field(METRICS[i], values[from + i]);
        }
        return new Json().field("Stage ID", stage).field("Stage Attempt ID", attempt)
                .raw("Executor Metrics", metrics.end()).end();
    }

    private static long[] values(ExecutorMetrics m) {
        long[] out = new long[METRICS.length];
        for (int i = 0; i < METRICS.length; i++) {
            try {
                out[i] = Math.max(0L, m.getMetricValue(METRICS[i]));
            } catch (RuntimeException e) {
                out[i] = 0L; // a metric this Spark does not have
            }
        }
        return out;
    }

    private static void max(long[] into, long[] values) {
        for (int i = 0; i < into.length; i++) {
            into[i] = Math.max(into[i], values[i]);
        }
    }
}
