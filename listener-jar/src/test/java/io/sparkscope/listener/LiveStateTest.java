package io.sparkscope.listener;

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
    void aCompletedStageKeepsItsLinesAndLatestProgressInArrivalOrder() {
        LiveState live = new LiveState(10);
        live.put(LiveState.Kind.JOB, "0", "job0");
        live.put(LiveState.Kind.STAGE, "0.0", "submit0");
        live.progress(LiveState.Kind.STAGE, "0.0", "progress0-a");
        live.put(LiveState.Kind.STAGE, "1.0", "submit1");
        live.progress(LiveState.Kind.STAGE, "0.0", "progress0-b");
        live.complete(LiveState.Kind.STAGE, "0.0", "complete0");
        live.progress(LiveState.Kind.STAGE, "9.0", "ignored: not live");
        assertTrue(live.isCompleted(LiveState.Kind.STAGE, "0.0"));
        assertFalse(live.isCompleted(LiveState.Kind.STAGE, "1.0"));
        assertEquals(List.of("job0", "submit0", "submit1", "progress0-b", "complete0"),
                live.linesInOrder());
        live.removeIf(LiveState.Kind.STAGE, k -> k.startsWith("0."));
        assertEquals(List.of("job0", "submit1"), live.linesInOrder());
    }
}
