package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Coalescing: many task events become one cumulative snapshot per read. */
class StageCountersTest {
    @Test
    void taskEventsAddUpToOneCumulativeSnapshot() {
        StageCounters c = new StageCounters(3, 1);
        long[] snap = new long[StageCounters.SNAPSHOT_SIZE];
        long first = c.snapshot(snap);
        for (int i = 0; i < 5; i++) {
            c.taskStarted();
        }
        c.taskEnded(StageCounters.SUCCEEDED, 0, 10, 20, 30, 40, 50, 60);
        c.taskEnded(StageCounters.SUCCEEDED, 0, 1, 2, 3, 4, 5, 6);
        c.taskEnded(StageCounters.KILLED, 0, 0, 0, 0, 0, 0, 0);
        c.taskEnded(StageCounters.FAILED, 1, 0, 0, 0, 0, 0, 0); // Resubmitted: no TaskStart
        long second = c.snapshot(snap);
        assertNotEquals(first, second, "a change shows in the sequence");
        assertEquals(6, snap[StageCounters.STARTED]);
        assertEquals(2, snap[StageCounters.SUCCEEDED]);
        assertEquals(1, snap[StageCounters.KILLED]);
        assertEquals(1, snap[StageCounters.FAILED]);
        assertEquals(11, snap[StageCounters.RUN_TIME]);
        assertEquals(66, snap[StageCounters.SHUFFLE_WRITE_BYTES]);
        assertEquals(second, c.snapshot(snap), "no change, same sequence: nothing to send");
        assertFalse(c.finishedOnBus());
        c.markCompleted();
        assertFalse(c.finishedOnBus(), "two tasks still run");
        c.taskEnded(StageCounters.SUCCEEDED, 0, 0, 0, 0, 0, 0, 0);
        c.taskEnded(StageCounters.SUCCEEDED, 0, 0, 0, 0, 0, 0, 0);
        assertTrue(c.finishedOnBus());
        c.snapshot(snap);
        assertEquals(1, snap[StageCounters.COMPLETED]);
    }

    @Test
    void successfulRunTimesGiveMinMedianMaxAndSpillAndGcAddUp() {
        StageCounters c = new StageCounters(1, 0);
        long[] snap = new long[StageCounters.SNAPSHOT_SIZE];
        int[] hist = new int[Durations.BUCKETS];
        c.snapshot(snap, hist);
        assertEquals(-1, snap[StageCounters.DURATION_MIN], "no successful task yet");
        // nine tasks of about 100 ms and one straggler of 5 s
        for (int i = 0; i < 9; i++) {
            c.taskEnded(StageCounters.SUCCEEDED, 0, 95 + i, 0, 0, 0, 0, 0, 1000, 10, 5);
        }
        c.taskEnded(StageCounters.SUCCEEDED, 0, 5000, 0, 0, 0, 0, 0, 0, 0, 50);
        c.taskEnded(StageCounters.FAILED, 0, 99999, 0, 0, 0, 0, 0, 0, 0, 0); // not a duration
        c.snapshot(snap, hist);
        assertEquals(95, snap[StageCounters.DURATION_MIN]);
        assertEquals(5000, snap[StageCounters.DURATION_MAX]);
        long median = Durations.quantile(hist, 0.5, 95, 5000);
        assertTrue(median >= 80 && median <= 112, "median " + median);
        assertEquals(9000, snap[StageCounters.MEMORY_SPILLED]);
        assertEquals(90, snap[StageCounters.DISK_SPILLED]);
        assertEquals(95, snap[StageCounters.GC_TIME]);
    }

    @Test
    void durationBucketsCoverEveryValueWithinAQuarter() {
        int last = -1;
        for (long ms = 0; ms < 1L << 22; ms = ms < 64 ? ms + 1 : ms + ms / 7) {
            int b = Durations.bucket(ms);
            assertTrue(b >= last, "buckets grow with the value");
            last = b;
            long lo = Durations.lower(b);
            assertTrue(lo <= ms && ms < Durations.lower(b + 1), ms + " in bucket " + b);
            assertTrue(ms - lo <= Math.max(1, ms / 4), ms + " is far from " + lo);
        }
        assertEquals(Durations.BUCKETS - 1, Durations.bucket(Long.MAX_VALUE));
        assertEquals(-1, Durations.quantile(new int[Durations.BUCKETS], 0.5, 0, 0));
    }
}
