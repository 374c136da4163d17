package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Task progress, coalesced: the bus thread only bumps each stage attempt's counters, and this
 * turns the counters that changed into one cumulative progress line per attempt, kept in the
 * live state as the attempt's latest. Sender thread only.
 */
final class Progress {
    private final ConcurrentLinkedQueue<StageCounters> newStages;
    private final LiveState live;
    private final Connector agent;
    private final List<StageCounters> tracked = new ArrayList<>();
    private final long[] snap = new long[StageCounters.SNAPSHOT_SIZE];
    private final int[] snapDurations = new int[Durations.BUCKETS];

    Progress(ConcurrentLinkedQueue<StageCounters> newStages, LiveState live, Connector agent) {
        this.newStages = newStages;
        this.live = live;
        this.agent = agent;
    }

    /** Takes on the stage attempts the bus thread has started counting since the last call. */
    void adoptNewStages() {
        StageCounters c;
        while ((c = newStages.poll()) != null) {
            tracked.add(c);
        }
    }

    /**
     * One progress line per stage attempt whose counters changed, sent and kept in the live state
     * as the attempt's latest. Retired attempts get their final line and are forgotten.
     */
    void write() {
        update(false);
    }

    /**
     * For a snapshot: every tracked attempt's current counters go into the live state, to be sent
     * in place with the attempt's other lines ({@link LiveState#linesInOrder}). Attempts that are
     * counted but not live (their job ended, or their StageSubmitted was lost) are not in it.
     */
    void refresh() {
        update(true);
    }

    /** {@code snapshot}: every attempt's line into the live state only; else changed ones, sent. */
    private void update(boolean snapshot) {
        long now = System.currentTimeMillis();
        int keep = 0;
        for (int i = 0; i < tracked.size(); i++) {
            StageCounters c = tracked.get(i);
            boolean retired = c.retired; // read first: a retired attempt's snapshot is final
            long seq = c.snapshot(snap, snapDurations);
            if (seq >= 0 && (snapshot || seq != c.sentSeq)) {
                c.sentSeq = seq;
                String line = line(c, now);
                live.progress(LiveState.stageKey(c.stageId, c.attemptId), line);
                if (!snapshot) {
                    agent.writeLine(line);
                }
            }
            if (!retired || seq < 0) {
                tracked.set(keep++, c);
            }
        }
        for (int i = tracked.size() - 1; i >= keep; i--) {
            tracked.remove(i);
        }
    }

    private String line(StageCounters c, long now) {
        Json line = new Json("SparkscopeStageProgress")
                .field("time", now)
                .field("stageId", c.stageId)
                .field("stageAttemptId", c.attemptId)
                .field("started", snap[StageCounters.STARTED])
                .field("succeeded", snap[StageCounters.SUCCEEDED])
                .field("failed", snap[StageCounters.FAILED])
                .field("killed", snap[StageCounters.KILLED])
                .field("executorRunTime", snap[StageCounters.RUN_TIME])
                .field("executorCpuTime", snap[StageCounters.CPU_TIME])
                .field("inputBytes", snap[StageCounters.INPUT_BYTES])
                .field("outputBytes", snap[StageCounters.OUTPUT_BYTES])
                .field("shuffleReadBytes", snap[StageCounters.SHUFFLE_READ_BYTES])
                .field("shuffleWriteBytes", snap[StageCounters.SHUFFLE_WRITE_BYTES])
                .field("memoryBytesSpilled", snap[StageCounters.MEMORY_SPILLED])
                .field("diskBytesSpilled", snap[StageCounters.DISK_SPILLED])
                .field("jvmGcTime", snap[StageCounters.GC_TIME]);
        long min = snap[StageCounters.DURATION_MIN];
        long max = snap[StageCounters.DURATION_MAX];
        if (min >= 0) {
            line.field("durationMinMs", min)
                    .field("durationMedianMs", Durations.quantile(snapDurations, 0.5, min, max))
                    .field("durationMaxMs", max);
        }
        return line.end();
    }
}
