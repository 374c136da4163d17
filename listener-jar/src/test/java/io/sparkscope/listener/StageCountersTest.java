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
}
