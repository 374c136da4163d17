package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

class LiveStateTest {
    @Test
    void aFullKindEvictsItsOldestAndCountsIt() {
        LiveState live = new LiveState(2);
        live.put(LiveState.Kind.JOB, "1", "j1");
        live.put(LiveState.Kind.JOB, "2", "j2");
        live.put(LiveState.Kind.JOB, "3", "j3");
        assertEquals(2, live.size(LiveState.Kind.JOB));
        assertEquals(1, live.evicted());
        assertEquals(List.of("j2", "j3"), live.linesInOrder());
        live.put(LiveState.Kind.EXECUTOR, "e", "x");
        assertEquals(1, live.evicted(), "each kind has its own bound");
    }

    @Test
    void aStageAttemptReplaysSubmittedFirstFailureProgressThenCompletion() {
        LiveState live = new LiveState(10);
        live.putJob("0", "job0", new int[] {0, 1});
        live.put(LiveState.Kind.STAGE, "0.0", "submit0");
        assertTrue(live.progress("0.0", "progress0-a"));
        live.put(LiveState.Kind.STAGE, "1.0", "submit1");
        assertTrue(live.wantsFailedTaskEnd("0.0"));
        live.failedTaskEnd("0.0", "failed0-first");
        assertFalse(live.wantsFailedTaskEnd("0.0"), "only the first is kept");
        live.failedTaskEnd("0.0", "failed0-second");
        live.complete("0.0", "complete0");
        // Tasks that end after the completion (a failed or speculative attempt) still count.
        assertTrue(live.progress("0.0", "progress0-final"));
        live.put(LiveState.Kind.SQL, "5", "sql5");
        assertFalse(live.progress("9.0", "ignored: not live"));
        assertFalse(live.wantsFailedTaskEnd("9.0"));
        live.failedTaskEnd("9.0", "ignored: not live");
        assertTrue(live.isCompleted("0.0"));
        assertFalse(live.isCompleted("1.0"));
        assertEquals(List.of("job0", "submit0", "failed0-first", "progress0-final", "complete0",
                "submit1", "sql5"), live.linesInOrder());
        live.removeIf(LiveState.Kind.STAGE, k -> k.startsWith("0."));
        assertEquals(List.of("job0", "submit1", "sql5"), live.linesInOrder());
    }

    @Test
    void aJobTakesItsStageAttemptsWithItButNotThoseARunningJobShares() {
        LiveState live = new LiveState(10);
        live.putJob("1", "job1", new int[] {0, 1});
        live.putJob("2", "job2", new int[] {1, 2});
        live.put(LiveState.Kind.STAGE, "0.0", "s0");
        live.put(LiveState.Kind.STAGE, "1.0", "s1");
        live.put(LiveState.Kind.STAGE, "1.1", "s1b");
        live.put(LiveState.Kind.STAGE, "2.0", "s2");
        live.failedTaskEnd("0.0", "failed0");
        assertArrayEquals(new int[] {1, 2}, live.jobIds());
        assertTrue(live.stageNeeded(0) && live.stageNeeded(1) && live.stageNeeded(2));
        assertFalse(live.stageNeeded(3));

        assertTrue(live.removeJob("1"));
        assertFalse(live.removeJob("1"), "no longer live");
        assertEquals(List.of("job2", "s1", "s1b", "s2"), live.linesInOrder(),
                "stage 0 and its failure went with job 1; stage 1 stays for job 2");
        assertArrayEquals(new int[] {2}, live.jobIds());
    }

    @Test
    void anEvictedJobLeavesNoStageAttemptsBehind() {
        LiveState live = new LiveState(2);
        live.putJob("1", "job1", new int[] {0});
        live.put(LiveState.Kind.STAGE, "0.0", "s0");
        live.putJob("2", "job2", new int[] {1});
        live.putJob("3", "job3", new int[] {0, 2});
        live.putJob("4", "job4", new int[] {3});
        // Job 1 went first (stage 0 stays: job 3 needs it), then job 2.
        assertEquals(2, live.evicted());
        assertEquals(List.of("s0", "job3", "job4"), live.linesInOrder());
        live.putJob("5", "job5", new int[] {4});
        assertEquals(3, live.evicted());
        assertEquals(List.of("job4", "job5"), live.linesInOrder(), "stage 0 left with job 3");
        assertArrayEquals(new int[] {4, 5}, live.jobIds());
    }
}
