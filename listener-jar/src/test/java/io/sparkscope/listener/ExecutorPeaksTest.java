package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.executor.ExecutorMetrics;
import org.apache.spark.scheduler.AccumulableInfo;
import org.apache.spark.scheduler.SparkListenerExecutorMetricsUpdate;
import org.junit.jupiter.api.Test;

/** Executors' memory peaks from heartbeats: merged per executor, per stage as sent, bounded. */
class ExecutorPeaksTest {
    static ExecutorMetrics metrics(long heap, long offHeap, long storage, long gc) {
        Map<String, Object> m = new HashMap<>();
        m.put("JVMHeapMemory", heap);
        m.put("JVMOffHeapMemory", offHeap);
        m.put("OnHeapStorageMemory", storage);
        m.put("TotalGCTime", gc);
        @SuppressWarnings("unchecked")
        scala.collection.immutable.Map<String, Object> scalaMap =
                (scala.collection.immutable.Map<String, Object>) (Object)
                        scala.collection.immutable.Map$.MODULE$.from(
                                scala.jdk.javaapi.CollectionConverters.asScala(m));
        return new ExecutorMetrics(scalaMap);
    }

    /** A heartbeat of {@code id} with (stage, attempt) → metrics, and one accumulator update. */
    static SparkListenerExecutorMetricsUpdate heartbeat(String id, Object... stageMetrics) {
        Map<scala.Tuple2<Object, Object>, ExecutorMetrics> updates = new HashMap<>();
        for (int i = 0; i + 2 < stageMetrics.length + 1; i += 3) {
            updates.put(new scala.Tuple2<>(stageMetrics[i], stageMetrics[i + 1]),
                    (ExecutorMetrics) stageMetrics[i + 2]);
        }
        AccumulableInfo secret = new AccumulableInfo(1L, scala.Option.apply("secret-acc"),
                scala.Option.apply((Object) 5L), scala.Option.apply((Object) 5L), false, false,
                scala.Option.empty());
        scala.Tuple4<Object, Object, Object, scala.collection.immutable.Seq<AccumulableInfo>> acc =
                new scala.Tuple4<>(9L, 3, 0, SenderTest.seq(List.of(secret)));
        return new SparkListenerExecutorMetricsUpdate(id, SenderTest.seq(List.of(acc)),
                scala.jdk.javaapi.CollectionConverters.asScala(updates));
    }

    @Test
    void aHeartbeatBecomesOneLineOfPeaksPerStageAndSinceTheExecutorStarted() {
        ExecutorPeaks p = new ExecutorPeaks(8, 1000L, 4096L);
        String first = p.update(heartbeat("1", -1, -1, metrics(300, 40, 7, 11), 3, 0,
                metrics(250, 30, 7, 11)));
        assertTrue(first.startsWith("{\"Event\":\"SparkListenerExecutorMetricsUpdate\","
                + "\"Executor ID\":\"1\",\"Metrics Updated\":[],"), first);
        assertTrue(first.contains("{\"Stage ID\":-1,\"Stage Attempt ID\":-1,\"Executor Metrics\":"
                + "{\"JVMHeapMemory\":300,\"JVMOffHeapMemory\":40,\"OnHeapStorageMemory\":7,"
                + "\"OffHeapStorageMemory\":0,\"TotalGCTime\":11}}"), first);
        assertTrue(first.contains("{\"Stage ID\":3,\"Stage Attempt ID\":0,\"Executor Metrics\":"
                + "{\"JVMHeapMemory\":250,"), first);
        assertTrue(first.endsWith(",\"Max Heap Memory\":4096}"), first);
        assertFalse(first.contains("secret-acc"), "accumulator updates stay in the driver");

        // A lower heartbeat later: the whole executor's peaks stay, the stage's are as sent.
        String second = p.update(heartbeat("1", -1, -1, metrics(100, 50, 2, 19), 3, 0,
                metrics(100, 50, 2, 19)));
        assertTrue(second.contains("{\"Stage ID\":-1,\"Stage Attempt ID\":-1,\"Executor Metrics\":"
                + "{\"JVMHeapMemory\":300,\"JVMOffHeapMemory\":50,\"OnHeapStorageMemory\":7,"
                + "\"OffHeapStorageMemory\":0,\"TotalGCTime\":19}}"), second);
        assertTrue(second.contains("{\"Stage ID\":3,\"Stage Attempt ID\":0,\"Executor Metrics\":"
                + "{\"JVMHeapMemory\":100,"), second);

        // The driver's heap is this JVM's.
        String driver = p.update(heartbeat("driver", -1, -1, metrics(5, 0, 0, 0)));
        assertTrue(driver.endsWith(",\"Max Heap Memory\":1000}"), driver);

        List<String> snapshot = p.lines();
        assertEquals(2, snapshot.size());
        assertTrue(snapshot.get(0).contains("\"JVMHeapMemory\":300"), snapshot.get(0));
        assertFalse(snapshot.get(0).contains("\"Stage ID\":3"), "a snapshot has no stage peaks");
        p.remove("1");
        assertEquals(1, p.size());
    }

    @Test
    void aHeartbeatWithoutMetricsSendsNothingAndTheOldestExecutorGoesAtTheBound() {
        ExecutorPeaks p = new ExecutorPeaks(2, 1000L, 1000L);
        assertNull(p.update(heartbeat("1")));
        p.update(heartbeat("1", -1, -1, metrics(1, 1, 1, 1)));
        p.update(heartbeat("2", -1, -1, metrics(1, 1, 1, 1)));
        p.update(heartbeat("1", -1, -1, metrics(2, 1, 1, 1))); // 1 is now the newest
        p.update(heartbeat("3", -1, -1, metrics(1, 1, 1, 1)));
        assertEquals(2, p.size());
        assertEquals(1, p.evicted);
        assertTrue(p.lines().get(0).contains("\"Executor ID\":\"1\""), p.lines().toString());
    }
}
