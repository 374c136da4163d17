package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.SparkConf;
import org.apache.spark.TaskState$;
import org.apache.spark.UnknownReason$;
import org.apache.spark.executor.ExecutorMetrics;
import org.apache.spark.executor.TaskMetrics;
import org.apache.spark.scheduler.JobSucceeded$;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.StageInfo;
import org.apache.spark.scheduler.TaskInfo;
import org.apache.spark.scheduler.TaskLocality$;
import org.junit.jupiter.api.Test;

/** The sender against a fake agent: snapshots on every reconnect, backoff, commands. */
class SenderTest {
    private final EventRing ring = new EventRing(10_000);
    private final ConcurrentLinkedQueue<StageCounters> newStages = new ConcurrentLinkedQueue<>();
    /** What Spark says is active; no SparkContext (cannot tell) unless a test sets it. */
    private volatile int[] sparkActive;
    private final ActiveJobs activeJobs = () -> sparkActive;

    private Sender sender(FakeAgent agent, String... extra) throws java.io.IOException {
        java.nio.file.Path tokenFile = java.nio.file.Files.createTempFile("sparkscope", ".token");
        java.nio.file.Files.writeString(tokenFile, FakeAgent.TOKEN + "\n");
        tokenFile.toFile().deleteOnExit();
        SparkConf conf = new SparkConf(false)
                .set("spark.sparkscope.agent", "127.0.0.1:" + agent.port())
                .set("spark.sparkscope.tokenFile", tokenFile.toString())
                .set("spark.app.id", "app-test")
                .set("spark.sparkscope.flushIntervalMs", "20");
        for (int i = 0; i + 1 < extra.length; i += 2) {
            conf.set(extra[i], extra[i + 1]);
        }
        Sender s = new Sender(ListenerConfig.from(conf), conf, ring, newStages, new AtomicLong(),
                new AtomicLong(), new AtomicLong(), activeJobs);
        s.start();
        return s;
    }

    @SuppressWarnings("unchecked")
    static <T> scala.collection.immutable.Seq<T> seq(List<T> items) {
        return (scala.collection.immutable.Seq<T>) scala.jdk.javaapi.CollectionConverters
                .asScala(items).toList();
    }

    private static StageInfo stage(int id, int tasks) {
        return stage(id, 0, tasks);
    }

    static StageInfo stage(int id, int attempt, int tasks) {
        StageInfo info = new StageInfo(id, attempt, "stage " + id, tasks, seq(List.of()),
                seq(List.of()), "", TaskMetrics.empty(), seq(List.of()), scala.Option.empty(), 0,
                false, 0);
        info.submissionTime_$eq(scala.Option.apply((Object) 1000L));
        return info;
    }

    /** A failed task end as Spark posts it, for task {@code taskId} of the given attempt. */
    private static SparkListenerTaskEnd failedTask(int stage, int attempt, long taskId) {
        TaskInfo info = new TaskInfo(taskId, 0, 0, 0, 1000L, "1", "host",
                TaskLocality$.MODULE$.PROCESS_LOCAL(), false);
        info.markFinished(TaskState$.MODULE$.FAILED(), 2000L);
        return new SparkListenerTaskEnd(stage, attempt, "ShuffleMapTask", UnknownReason$.MODULE$,
                info, new ExecutorMetrics(), TaskMetrics.empty());
    }

    private static Properties props(String... kv) {
        Properties p = new Properties();
        for (int i = 0; i + 1 < kv.length; i += 2) {
            p.setProperty(kv[i], kv[i + 1]);
        }
        return p;
    }

    private static int indexOf(List<String> lines, String... parts) {
        for (int i = 0; i < lines.size(); i++) {
            boolean all = true;
            for (String p : parts) {
                all &= lines.get(i).contains(p);
            }
            if (all) {
                return i;
            }
        }
        return -1;
    }

    @Test
    void executorsMemoryPeaksOutliveTheAgentsAbsenceAndFollowTheSnapshot() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            Sender s = sender(agent);
            agent.accept();
            agent.readSnapshot();
            ring.offer(ExecutorPeaksTest.heartbeat("driver", -1, -1,
                    ExecutorPeaksTest.metrics(700, 10, 0, 5)));
            String line = agent.readUntil(l -> l.contains("SparkListenerExecutorMetricsUpdate"));
            assertTrue(line.contains("\"JVMHeapMemory\":700"), line);
            assertFalse(line.contains("secret-acc"), line);

            // Away: a lower heartbeat is kept as peaks, not sent.
            agent.drop();
            ring.offer(ExecutorPeaksTest.heartbeat("driver", -1, -1,
                    ExecutorPeaksTest.metrics(300, 20, 0, 9)));
            agent.accept();
            agent.readSnapshot();
            String resent = agent.readUntil(l -> l.contains("SparkListenerExecutorMetricsUpdate"));
            assertTrue(resent.contains("\"JVMHeapMemory\":700,\"JVMOffHeapMemory\":20"), resent);
            assertTrue(resent.contains("\"TotalGCTime\":9"), resent);
            s.stop(3_000);
        }
    }

    @Test
    void everyReconnectGetsTheWholeLiveStateIncludingStagesThatCompletedMeanwhile()
            throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            Sender s = sender(agent);
            assertTrue(agent.accept().contains("\"appId\":\"app-test\""));
            assertTrue(agent.readSnapshot().isEmpty(), "nothing live yet");

            StageInfo s0 = stage(0, 4);
            StageInfo s1 = stage(1, 2);
            StageCounters c0 = new StageCounters(0, 0);
            newStages.add(c0);
            ring.offer(new SparkListenerJobStart(7, 1L, seq(List.of(s0, s1)),
                    props("spark.job.tags", "t1", "spark.sql.warehouse.dir", "/secret")));
            ring.offer(new SparkListenerStageSubmitted(s0, props()));
            for (int i = 0; i < 4; i++) {
                c0.taskStarted();
                c0.taskEnded(StageCounters.SUCCEEDED, 0, 1, 1, 1, 1, 1, 1);
            }
            c0.markCompleted();
            c0.retired = true;
            s0.completionTime_$eq(scala.Option.apply((Object) 2000L));
            ring.offer(new SparkListenerStageCompleted(s0));
            ring.offer(new SparkListenerStageSubmitted(s1, props()));
            agent.readUntil(l -> l.contains("StageSubmitted") && l.contains("\"Stage ID\":1"));

            // The agent goes away; the listener comes back at once and resends.
            long lost = System.nanoTime();
            agent.drop();
            agent.accept();
            long backMs = (System.nanoTime() - lost) / 1_000_000;
            assertTrue(backMs < 1_500, "reconnected after " + backMs + " ms");
            List<String> snap = agent.readSnapshot();
            int job = indexOf(snap, "SparkListenerJobStart", "\"Job ID\":7");
            int submitted0 = indexOf(snap, "StageSubmitted", "\"Stage ID\":0");
            int progress0 = indexOf(snap, "SparkscopeStageProgress", "\"stageId\":0",
                    "\"succeeded\":4");
            int completed0 = indexOf(snap, "StageCompleted", "\"Stage ID\":0");
            int submitted1 = indexOf(snap, "StageSubmitted", "\"Stage ID\":1");
            assertTrue(job >= 0 && submitted0 > job && progress0 > submitted0
                    && completed0 > submitted0 && submitted1 > job, String.join("\n", snap));
            assertFalse(snap.get(job).contains("/secret"), "only the allowed properties leave");
            assertTrue(snap.get(job).contains("t1"));

            // Once the job ends its stages leave the live state.
            ring.offer(new SparkListenerJobEnd(7, 3000L, JobSucceeded$.MODULE$));
            agent.readUntil(l -> l.contains("SparkListenerJobEnd"));
            agent.drop();
            agent.accept();
            assertEquals(List.of(), agent.readSnapshot());

            // Commands are answered, here without a SparkContext to run them in.
            agent.send("{\"cmd\":\"cancelJob\",\"id\":\"c1\",\"jobId\":7}");
            String answer = agent.readUntil(l -> l.contains("SparkscopeCommandResult"));
            assertTrue(answer.contains("\"id\":\"c1\"") && answer.contains("\"ok\":false")
                    && answer.contains("no active SparkContext"), answer);
            s.stop(3_000);
        }
    }

    @Test
    void aSnapshotGivesEachStageAttemptItsFirstFailureAndCurrentCountsBeforeItsCompletion()
            throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            // No flush tick during the test: the counters that change after the stage completed
            // reach the agent only if the snapshot reads them afresh.
            Sender s = sender(agent, "spark.sparkscope.flushIntervalMs", "600000");
            agent.accept();
            assertTrue(agent.readSnapshot().isEmpty());

            // Stage 0 attempt 0 fails (a fetch failure) with a task still running; attempt 1
            // retries it.
            StageInfo first = stage(0, 0, 3);
            StageCounters c0 = new StageCounters(0, 0);
            newStages.add(c0);
            ring.offer(new SparkListenerJobStart(7, 1L, seq(List.of(first)), props()));
            ring.offer(new SparkListenerStageSubmitted(first, props()));
            for (int i = 0; i < 4; i++) {
                c0.taskStarted();
            }
            c0.taskEnded(StageCounters.SUCCEEDED, 0, 1, 1, 1, 1, 1, 1);
            ring.offer(failedTask(0, 0, 11));
            c0.taskEnded(StageCounters.FAILED, 0, 1, 1, 1, 1, 1, 1);
            ring.offer(failedTask(0, 0, 12));
            c0.taskEnded(StageCounters.FAILED, 0, 1, 1, 1, 1, 1, 1);
            c0.markCompleted();
            first.completionTime_$eq(scala.Option.apply((Object) 2000L));
            first.failureReason_$eq(scala.Option.apply("fetch failed"));
            ring.offer(new SparkListenerStageCompleted(first));
            StageInfo retry = stage(0, 1, 3);
            StageCounters c1 = new StageCounters(0, 1);
            newStages.add(c1);
            ring.offer(new SparkListenerStageSubmitted(retry, props()));
            c1.taskStarted();
            c1.taskStarted();
            String live = agent.readUntil(l -> l.contains("SparkListenerTaskEnd"));
            assertTrue(live.contains("\"Task ID\":11"), live);
            agent.readUntil(l -> l.contains("StageSubmitted") && l.contains("\"Stage Attempt ID\":1"));

            // After the completion: attempt 0's last task is killed, attempt 1 makes progress.
            c0.taskEnded(StageCounters.KILLED, 0, 1, 1, 1, 1, 1, 1);
            c0.retired = true;
            c1.taskEnded(StageCounters.SUCCEEDED, 0, 1, 1, 1, 1, 1, 1);

            agent.drop();
            agent.accept();
            List<String> snap = agent.readSnapshot();
            String all = String.join("\n", snap);
            int job = indexOf(snap, "SparkListenerJobStart", "\"Job ID\":7");
            int submitted0 = indexOf(snap, "StageSubmitted", "\"Stage Attempt ID\":0");
            int failed0 = indexOf(snap, "SparkListenerTaskEnd", "\"Task ID\":11");
            int progress0 = indexOf(snap, "SparkscopeStageProgress", "\"stageAttemptId\":0");
            int completed0 = indexOf(snap, "StageCompleted", "\"Stage Attempt ID\":0");
            int submitted1 = indexOf(snap, "StageSubmitted", "\"Stage Attempt ID\":1");
            int progress1 = indexOf(snap, "SparkscopeStageProgress", "\"stageAttemptId\":1");
            assertEquals(List.of(0, 1, 2, 3, 4, 5, 6), List.of(job, submitted0, failed0, progress0,
                    completed0, submitted1, progress1), all);
            assertEquals(7, snap.size(), "one progress line per attempt, one failure: " + all);
            assertTrue(snap.get(progress0).contains("\"started\":4,\"succeeded\":1,\"failed\":2,"
                    + "\"killed\":1,"), snap.get(progress0));
            assertTrue(snap.get(progress1).contains("\"started\":2,\"succeeded\":1,"),
                    snap.get(progress1));

            // The job's end takes its attempts and their failure out of the live state.
            ring.offer(new SparkListenerJobEnd(7, 3000L, JobSucceeded$.MODULE$));
            agent.readUntil(l -> l.contains("SparkListenerJobEnd"));
            agent.drop();
            agent.accept();
            assertEquals(List.of(), agent.readSnapshot());
            s.stop(3_000);
        }
    }

    @Test
    void jobsSparkNoLongerRunsAreAnnouncedGoneCountedAndLeaveTheSnapshot() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            sparkActive = new int[] {7, 8, 9};
            Sender s = sender(agent, "spark.sparkscope.jobCheckIntervalMs", "100");
            agent.accept();
            agent.readSnapshot();
            StageInfo s5 = stage(5, 2);
            for (int job = 7; job <= 9; job++) {
                ring.offer(new SparkListenerJobStart(job, 1L,
                        seq(job == 9 ? List.of(s5) : List.of()), props()));
            }
            ring.offer(new SparkListenerStageSubmitted(s5, props()));
            agent.readUntil(l -> l.contains("StageSubmitted"));

            // Spark's bus dropped the JobEnds of jobs 7 and 9.
            sparkActive = new int[] {8};
            String gone = agent.readUntil(l -> l.contains("SparkscopeJobsGone"));
            assertTrue(gone.matches("\\{\"Event\":\"SparkscopeJobsGone\",\"time\":\\d+,"
                    + "\"jobIds\":\\[7,9]}"), gone);
            agent.readUntil(l -> l.contains("SparkscopeListenerStats")
                    && l.contains("\"jobsReaped\":2,"));

            agent.drop();
            agent.accept();
            List<String> snap = agent.readSnapshot();
            assertEquals(1, snap.size(), String.join("\n", snap));
            assertTrue(snap.get(0).contains("\"Job ID\":8"), snap.get(0));
            s.stop(3_000);
        }
    }

    @Test
    void overTlsTheListenerTalksOnlyToTheCertificateItTrusts() throws Exception {
        java.nio.file.Path dir = java.nio.file.Path.of(System.getProperty("sparkscope.test.tls"));
        try (FakeAgent agent = new FakeAgent(dir.resolve("agent.p12"))) {
            Sender s = sender(agent, "spark.sparkscope.tls.trustCert",
                    dir.resolve("agent.pem").toString());
            assertTrue(agent.accept().contains("\"appId\":\"app-test\""));
            assertTrue(agent.readSnapshot().isEmpty());
            s.stop(3_000);
        }
        try (FakeAgent agent = new FakeAgent(dir.resolve("agent.p12"))) {
            Sender s = sender(agent, "spark.sparkscope.tls.trustCert",
                    dir.resolve("other.pem").toString());
            // The handshake fails on the listener's side: no hello ever arrives.
            for (int i = 0; i < 2; i++) {
                try {
                    agent.accept();
                    throw new AssertionError("a listener talked to a certificate it does not trust");
                } catch (java.io.IOException expected) {
                    // the TLS handshake was refused
                }
            }
            s.stop(3_000);
        }
    }

    @Test
    void anImpostorAgentLearnsNoTokenAndCanCommandNothing() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            Sender s = sender(agent);
            String hello = agent.acceptAsImpostor();
            assertFalse(hello.contains(FakeAgent.TOKEN), "the hello carries no token");
            assertTrue(hello.contains("\"protocol\":" + Hello.PROTOCOL)
                    && hello.contains("\"nonce\":\""), hello);
            agent.send("{\"cmd\":\"cancelJob\",\"id\":\"c1\",\"jobId\":1}");
            String rest = agent.readToEnd();
            assertEquals("", rest, "the listener said nothing more and closed");
            // The genuine agent on the same port is then accepted.
            assertTrue(agent.accept().contains("\"appId\":\"app-test\""));
            agent.readSnapshot();
            s.stop(3_000);
        }
    }

    @Test
    void aRefusedListenerRetriesWithinASecondAndQuickDisconnectsDoNotSpin() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            Sender s = sender(agent);
            List<Long> attempts = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                agent.accept("{\"ok\":false,\"error\":\"wrong or missing token\"}");
                attempts.add(System.nanoTime());
                agent.drop();
            }
            long longest = 0;
            long total = attempts.get(attempts.size() - 1) - attempts.get(0);
            for (int i = 1; i < attempts.size(); i++) {
                longest = Math.max(longest, attempts.get(i) - attempts.get(i - 1));
            }
            assertTrue(longest < 1_300_000_000L, "longest gap " + longest / 1_000_000 + " ms");
            assertTrue(total > 1_000_000_000L, "backed off: five retries took "
                    + total / 1_000_000 + " ms");
            s.stop(3_000);
        }
    }

    @Test
    void anAgentThatStopsReadingIsLeftAfterTheWriteTimeout() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            Sender s = sender(agent, "spark.sparkscope.writeTimeoutMs", "500");
            agent.accept();
            agent.readSnapshot();
            agent.stall();
            String big = "x".repeat(20_000);
            for (int i = 0; i < 2_000; i++) {
                ring.offer(new SparkListenerJobStart(i, 1L, seq(List.of()),
                        props("spark.job.description", big)));
                if (i % 200 == 0) {
                    Thread.sleep(20); // stay within the ring's capacity
                }
            }
            Thread.sleep(3_000); // not reading: the listener's writes must time out meanwhile
            assertTrue(agent.closedByListener(2_000), "the listener gave up on the stalled agent");
            s.stop(3_000);
        }
    }

    @Test
    void aTokenFileThatCannotBeReadMeansNothingIsSent() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            SparkConf conf = new SparkConf(false)
                    .set("spark.sparkscope.agent", "127.0.0.1:" + agent.port())
                    .set("spark.sparkscope.tokenFile", "/nonexistent/sparkscope.token")
                    .set("spark.app.id", "app-test")
                    .set("spark.sparkscope.flushIntervalMs", "20");
            ListenerConfig config = ListenerConfig.from(conf);
            assertTrue(config.unusable != null && config.unusable.contains("cannot read"),
                    String.valueOf(config.unusable));
            Sender s = new Sender(config, conf, ring, newStages, new AtomicLong(),
                    new AtomicLong(), new AtomicLong());
            s.start();
            assertFalse(agent.connectsWithin(1_000), "the listener connected anyway");
            s.stop(3_000);
        }
    }

    @Test
    void withoutATokenTheListenerTakesNoCommands() throws Exception {
        try (FakeAgent agent = new FakeAgent()) {
            SparkConf conf = new SparkConf(false)
                    .set("spark.sparkscope.agent", "127.0.0.1:" + agent.port())
                    .set("spark.app.id", "app-test")
                    .set("spark.sparkscope.flushIntervalMs", "20");
            ListenerConfig config = ListenerConfig.from(conf);
            assumeTrue(config.token.isEmpty(), "no token in this environment");
            Sender s = new Sender(config, conf, ring, newStages, new AtomicLong(),
                    new AtomicLong(), new AtomicLong());
            s.start();
            agent.acceptWithoutToken();
            agent.readSnapshot();
            agent.send("{\"cmd\":\"cancelJob\",\"id\":\"c9\",\"jobId\":1}");
            String answer = agent.readUntil(l -> l.contains("SparkscopeCommandResult"));
            assertTrue(answer.contains("\"id\":\"c9\"") && answer.contains("\"ok\":false")
                    && answer.contains("no token"), answer);
            s.stop(3_000);
        }
    }
}
