package io.sparkscope.listener;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Cumulative task counters of one stage attempt. The listener-bus thread is the only writer; the
 * sender thread takes consistent snapshots through a sequence lock (odd = write in progress), so
 * neither side ever blocks and a task event costs a handful of plain stores.
 */
final class StageCounters {
    static final int STARTED = 0;
    static final int SUCCEEDED = 1;
    static final int FAILED = 2;
    static final int KILLED = 3;
    static final int RUN_TIME = 4;
    static final int CPU_TIME = 5;
    static final int INPUT_BYTES = 6;
    static final int OUTPUT_BYTES = 7;
    static final int SHUFFLE_READ_BYTES = 8;
    static final int SHUFFLE_WRITE_BYTES = 9;
    static final int COMPLETED = 10;
    static final int MEMORY_SPILLED = 11;
    static final int DISK_SPILLED = 12;
    static final int GC_TIME = 13;
    /** Shortest and longest run time of a successful task; -1 before the first. */
    static final int DURATION_MIN = 14;
    static final int DURATION_MAX = 15;
    static final int SNAPSHOT_SIZE = 16;

    private static final VarHandle SEQ;

    static {
        try {
            SEQ = MethodHandles.lookup().findVarHandle(StageCounters.class, "seq", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final int stageId;
    final int attemptId;

    @SuppressWarnings("unused")
    private long seq;
    private long started;
    private long succeeded;
    private long failed;
    private long killed;
    private long runTime;
    private long cpuTime;
    private long inputBytes;
    private long outputBytes;
    private long shuffleReadBytes;
    private long shuffleWriteBytes;
    private long memorySpilled;
    private long diskSpilled;
    private long gcTime;
    private long durationMin = -1;
    private long durationMax = -1;
    /** Run times of successful tasks (Durations buckets): the stage's median, for skew hints. */
    private final int[] durations = new int[Durations.BUCKETS];
    private boolean completed;

    /** Set by the bus thread after its last write; the sender then sends a final line and forgets it. */
    volatile boolean retired;

    /** Sender-thread only: the sequence last sent (or discarded while the agent was away). */
    long sentSeq;

    StageCounters(int stageId, int attemptId) {
        this.stageId = stageId;
        this.attemptId = attemptId;
    }

    // ---- writer side: listener-bus thread only ----

    private long beginWrite() {
        long s = (long) SEQ.get(this);
        SEQ.setOpaque(this, s + 1);
        VarHandle.storeStoreFence();
        return s + 2;
    }

    private void endWrite(long next) {
        SEQ.setRelease(this, next);
    }

    void taskStarted() {
        long next = beginWrite();
        started++;
        endWrite(next);
    }

    /**
     * One ended task. {@code extraStart} is 1 for a {@code Resubmitted} end, which Spark posts for
     * an already-finished task without a new TaskStart; counting it as started keeps running ≥ 0.
     */
    void taskEnded(int outcome, int extraStart, long run, long cpu, long in, long out, long shRead,
            long shWrite) {
        taskEnded(outcome, extraStart, run, cpu, in, out, shRead, shWrite, 0, 0, 0);
    }

    /** The same, with the spill and GC time of the task. */
    void taskEnded(int outcome, int extraStart, long run, long cpu, long in, long out, long shRead,
            long shWrite, long memSpill, long diskSpill, long gc) {
        long next = beginWrite();
        started += extraStart;
        switch (outcome) {
            case SUCCEEDED:
                succeeded++;
                durations[Durations.bucket(run)]++;
                if (durationMin < 0 || run < durationMin) {
                    durationMin = run;
                }
                if (run > durationMax) {
                    durationMax = run;
                }
                break;
            case KILLED:
                killed++;
                break;
            default:
                failed++;
                break;
        }
        runTime += run;
        cpuTime += cpu;
        inputBytes += in;
        outputBytes += out;
        shuffleReadBytes += shRead;
        shuffleWriteBytes += shWrite;
        memorySpilled += memSpill;
        diskSpilled += diskSpill;
        gcTime += gc;
        endWrite(next);
    }

    void markCompleted() {
        long next = beginWrite();
        completed = true;
        endWrite(next);
    }

    /** Writer-side view: tasks still running, and whether the attempt is over. */
    boolean finishedOnBus() {
        return completed && started - succeeded - failed - killed <= 0;
    }

    // ---- reader side: sender thread ----

    /**
     * Copies a consistent snapshot into {@code out} and returns its sequence, or -1 if the writer
     * kept the lock through every retry (the caller simply tries again next flush).
     */
    long snapshot(long[] out) {
        return snapshot(out, null);
    }

    /** The same, also copying the duration histogram into {@code hist} when it is not null. */
    long snapshot(long[] out, int[] hist) {
        for (int attempt = 0; attempt < 64; attempt++) {
            long s1 = (long) SEQ.getAcquire(this);
            if ((s1 & 1) != 0) {
                Thread.onSpinWait();
                continue;
            }
            out[STARTED] = started;
            out[SUCCEEDED] = succeeded;
            out[FAILED] = failed;
            out[KILLED] = killed;
            out[RUN_TIME] = runTime;
            out[CPU_TIME] = cpuTime;
            out[INPUT_BYTES] = inputBytes;
            out[OUTPUT_BYTES] = outputBytes;
            out[SHUFFLE_READ_BYTES] = shuffleReadBytes;
            out[SHUFFLE_WRITE_BYTES] = shuffleWriteBytes;
            out[COMPLETED] = completed ? 1 : 0;
            out[MEMORY_SPILLED] = memorySpilled;
            out[DISK_SPILLED] = diskSpilled;
            out[GC_TIME] = gcTime;
            out[DURATION_MIN] = durationMin;
            out[DURATION_MAX] = durationMax;
            if (hist != null) {
                System.arraycopy(durations, 0, hist, 0, Durations.BUCKETS);
            }
            VarHandle.loadLoadFence();
            if ((long) SEQ.getOpaque(this) == s1) {
                return s1;
            }
        }
        return -1;
    }
}
