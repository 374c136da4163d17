package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.net.ServerSocket;
import java.util.Properties;

import org.apache.spark.SparkConf;
import org.apache.spark.scheduler.SparkListenerApplicationEnd;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskStart;
import org.apache.spark.scheduler.StageInfo;
import org.junit.jupiter.api.Test;

/** The bus-thread side: its stage table is bounded, and what it evicts is counted. */
class SparkscopeListenerTest {
    @Test
    void aFullStageTableEvictsACompletedAttemptAndCountsIt() throws Exception {
        int port;
        try (ServerSocket free = new ServerSocket(0)) {
            port = free.getLocalPort(); // nothing listens there: connects are refused
        }
        SparkConf conf = new SparkConf(false)
                .set("spark.sparkscope.agent", "127.0.0.1:" + port)
                .set("spark.app.id", "app-test")
                .set("spark.sparkscope.maxLiveEntities", "2");
        SparkscopeListener listener = new SparkscopeListener(conf);
        try {
            StageInfo s0 = SenderTest.stage(0, 0, 2);
            listener.onStageSubmitted(new SparkListenerStageSubmitted(s0, new Properties()));
            listener.onTaskStart(new SparkListenerTaskStart(0, 0, null));
            // Completed with a task still running (its end may never come): kept for now.
            listener.onStageCompleted(new SparkListenerStageCompleted(s0));
            listener.onStageSubmitted(new SparkListenerStageSubmitted(SenderTest.stage(1, 0, 2),
                    new Properties()));
            assertEquals(0, listener.countersEvicted());
            listener.onStageSubmitted(new SparkListenerStageSubmitted(SenderTest.stage(2, 0, 2),
                    new Properties()));
            assertEquals(1, listener.countersEvicted(), "stage 0 made room for stage 2");
            listener.onStageSubmitted(new SparkListenerStageSubmitted(SenderTest.stage(3, 0, 2),
                    new Properties()));
            assertEquals(1, listener.countersEvicted(), "no completed attempt left to evict");
        } finally {
            listener.onApplicationEnd(new SparkListenerApplicationEnd(1L, scala.Option.empty()));
        }
    }
}
