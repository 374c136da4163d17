package io.sparkscope.listener;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.Resubmitted$;
import org.apache.spark.SparkConf;
import org.apache.spark.Success$;
import org.apache.spark.TaskCommitDenied;
import org.apache.spark.TaskEndReason;
import org.apache.spark.TaskKilled;
import org.apache.spark.executor.TaskMetrics;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerApplicationEnd;
import org.apache.spark.scheduler.SparkListenerApplicationStart;
import org.apache.spark.scheduler.SparkListenerBlockManagerAdded;
import org.apache.spark.scheduler.SparkListenerBlockManagerRemoved;
import org.apache.spark.scheduler.SparkListenerBlockUpdated;
import org.apache.spark.scheduler.SparkListenerEnvironmentUpdate;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.scheduler.SparkListenerExecutorExcluded;
import org.apache.spark.scheduler.SparkListenerExecutorExcludedForStage;
import org.apache.spark.scheduler.SparkListenerExecutorMetricsUpdate;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerExecutorUnexcluded;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerNodeExcluded;
import org.apache.spark.scheduler.SparkListenerNodeExcludedForStage;
import org.apache.spark.scheduler.SparkListenerNodeUnexcluded;
import org.apache.spark.scheduler.SparkListenerResourceProfileAdded;
import org.apache.spark.scheduler.SparkListenerSpeculativeTaskSubmitted;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageExecutorMetrics;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.SparkListenerTaskGettingResult;
import org.apache.spark.scheduler.SparkListenerTaskStart;
import org.apache.spark.scheduler.SparkListenerUnpersistRDD;
import org.apache.spark.scheduler.SparkListenerUnschedulableTaskSetAdded;
import org.apache.spark.scheduler.SparkListenerUnschedulableTaskSetRemoved;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Spark listener that streams a Spark Connect server's events to the sparkscope agent
 * (docs/wire-protocol.md). On the listener-bus thread it only bumps per-stage counters or offers
 * the event to a bounded lock-free ring; serialization and I/O happen on {@link Sender}'s thread.
 *
 * <p>Enable with {@code --conf spark.extraListeners=io.sparkscope.listener.SparkscopeListener}.
 */
public class SparkscopeListener extends SparkListener {
    static final String VERSION = "0.1.0";

    private static final Logger LOG = LoggerFactory.getLogger(SparkscopeListener.class);
    /** SQL events the agent has no use for: accumulator floods and whole-plan JSON updates. */
    private static final long FULL_LOG_INTERVAL_NANOS = 60_000_000_000L;
    private static final long STOP_TIMEOUT_MS = 3_000;

    private static final int WARM_UP_STAGES = 120;
    private static final int WARM_UP_TASKS_PER_STAGE = 500;

    private final ListenerConfig config;
    private final EventRing ring; // null in the warm-up twin: offers go nowhere
    private final ConcurrentLinkedQueue<StageCounters> newStages = new ConcurrentLinkedQueue<>();
    // Single writer (the bus thread), so lazySet(get() + 1) is a safe, fence-free increment.
    private final AtomicLong queueDropped = new AtomicLong();
    // Task events of stage attempts first seen while the stage table was full: not counted.
    private final AtomicLong untrackedTaskEvents = new AtomicLong();
    // Completed stage attempts whose counters made room for a new one while the table was full.
    private final AtomicLong countersEvicted = new AtomicLong();
    private final Sender sender;
    private LogForwarder forwarder; // null: the driver's log lines are not forwarded

    private final boolean enabled;

    // Listener-bus thread only.
    // Last stage attempt seen: tasks of one stage come in runs, and these fields share a cache
    // line with the rest of this object, so the common case skips the table's three objects.
    private int lastStageId = -1;
    private int lastAttemptId = -1;
    private StageCounters lastCounters;
    private final StageTable stages = new StageTable();
    private final long[] scratch = new long[StageCounters.SNAPSHOT_SIZE];
    private long lastFullLog = Long.MIN_VALUE;
    private boolean untrackedLogged;
    private boolean errorLogged;

    public SparkscopeListener(SparkConf conf) {
        ListenerConfig cfg = null;
        EventRing r = null;
        Sender s = null;
        try {
            cfg = ListenerConfig.from(conf);
            r = new EventRing(cfg.queueCapacity);
            s = new Sender(cfg, conf, r, newStages, queueDropped, untrackedTaskEvents,
                    countersEvicted);
            if (cfg.logsMaxPerSecond > 0) {
                LogForwarder logs = null;
                try {
                    logs = LogForwarder.install(cfg.logsQueueCapacity, cfg.logsMaxPerSecond);
                } catch (Throwable t) {
                    LOG.warn("sparkscope: the driver's log lines are not forwarded", t);
                }
                if (logs != null) {
                    s.forwardLogs(logs);
                    forwarder = logs;
                }
            }
            s.start();
            LOG.info("sparkscope: listener {} streaming to agent {} (flush {} ms, queue {})",
                    VERSION, cfg.agentString(), cfg.flushIntervalMs, cfg.queueCapacity);
        } catch (Throwable t) {
            LOG.error("sparkscope: listener disabled, could not start", t);
            r = null;
            s = null;
        }
        this.config = cfg;
        this.ring = r;
        this.sender = s;
        this.enabled = s != null;
    }

    /** The warm-up twin: the same hot path over its own private state, with no ring or sender. */
    private SparkscopeListener(ListenerConfig cfg) {
        this.config = cfg;
        this.ring = null;
        this.sender = null;
        this.enabled = true;
    }

    /**
     * Runs the task-event hot path on a private twin until the JIT has compiled it. Called once
     * on the sender thread: on a busy driver the JIT otherwise reaches these methods only after
     * many thousands of real tasks, which then each pay interpreter cost on Spark's bus thread.
     */
    static void warmUp(ListenerConfig cfg) {
        SparkscopeListener twin = new SparkscopeListener(cfg);
        TaskMetrics metrics = TaskMetrics.empty();
        for (int stage = 0; stage < WARM_UP_STAGES; stage++) {
            // A fresh stage each time, completed before its last task ends: the first-sight and
            // retirement paths get compiled too, not only the steady state.
            SparkListenerTaskStart start = new SparkListenerTaskStart(stage, 0, null);
            SparkListenerTaskEnd ok = new SparkListenerTaskEnd(stage, 0, "ResultTask",
                    Success$.MODULE$, null, null, metrics);
            SparkListenerTaskEnd failed = new SparkListenerTaskEnd(stage, 0, "ResultTask",
                    Resubmitted$.MODULE$, null, null, metrics);
            for (int i = 0; i < WARM_UP_TASKS_PER_STAGE; i++) {
                twin.onTaskStart(start);
                if (i == WARM_UP_TASKS_PER_STAGE - 1) {
                    twin.stages.get(stage, 0).markCompleted();
                }
                twin.onTaskEnd((i & 15) == 15 ? failed : ok);
            }
        }
    }

    /** Stage attempts evicted from the full stage table (counted in the stats line). */
    long countersEvicted() {
        return countersEvicted.get();
    }

    // ---- hot path: task events only touch counters ----

    @Override
    public void onTaskStart(SparkListenerTaskStart e) {
        try {
            StageCounters c = counters(e.stageId(), e.stageAttemptId());
            if (c != null) {
                c.taskStarted();
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    @Override
    public void onTaskEnd(SparkListenerTaskEnd e) {
        try {
            TaskEndReason reason = e.reason();
            int outcome;
            int extraStart = 0;
            if (reason instanceof Success$) {
                outcome = StageCounters.SUCCEEDED;
            } else if (reason instanceof TaskKilled || reason instanceof TaskCommitDenied) {
                outcome = StageCounters.KILLED;
            } else {
                outcome = StageCounters.FAILED;
                if (reason instanceof Resubmitted$) {
                    extraStart = 1;
                }
                offer(e); // failed ends are sent whole, for their error
            }
            StageCounters c = counters(e.stageId(), e.stageAttemptId());
            if (c == null) {
                return;
            }
            TaskMetrics m = e.taskMetrics();
            if (m != null) {
                c.taskEnded(outcome, extraStart, m.executorRunTime(), m.executorCpuTime(),
                        m.inputMetrics().bytesRead(), m.outputMetrics().bytesWritten(),
                        m.shuffleReadMetrics().totalBytesRead(),
                        m.shuffleWriteMetrics().bytesWritten(), m.memoryBytesSpilled(),
                        m.diskBytesSpilled(), m.jvmGCTime());
            } else {
                c.taskEnded(outcome, extraStart, 0, 0, 0, 0, 0, 0);
            }
            if (c.finishedOnBus()) {
                retire(c);
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    // ---- stage lifecycle: counters plus a queued event ----

    @Override
    public void onStageSubmitted(SparkListenerStageSubmitted e) {
        try {
            // Offer first: the sender learns of new counters only after their StageSubmitted is queued.
            offer(e);
            if (!enabled) {
                return;
            }
            int id = e.stageInfo().stageId();
            int attempt = e.stageInfo().attemptNumber();
            if (stages.get(id, attempt) == null) {
                if (stages.size() >= config.maxLiveEntities) {
                    StageCounters victim = stages.anyCompleted(scratch);
                    if (victim != null) {
                        retire(victim);
                        countersEvicted.lazySet(countersEvicted.get() + 1);
                    }
                }
                counters(id, attempt);
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    @Override
    public void onStageCompleted(SparkListenerStageCompleted e) {
        try {
            offer(e);
            StageCounters c = stages.get(e.stageInfo().stageId(), e.stageInfo().attemptNumber());
            if (c != null) {
                c.markCompleted();
                if (c.finishedOnBus()) {
                    retire(c);
                }
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    // ---- everything else we forward goes through the ring ----

    @Override
    public void onJobStart(SparkListenerJobStart e) {
        offerSafely(e);
    }

    @Override
    public void onJobEnd(SparkListenerJobEnd e) {
        offerSafely(e);
    }

    @Override
    public void onApplicationStart(SparkListenerApplicationStart e) {
        offerSafely(e);
    }

    @Override
    public void onApplicationEnd(SparkListenerApplicationEnd e) {
        offerSafely(e);
        try {
            if (sender != null) {
                sender.stop(STOP_TIMEOUT_MS); // bounded: Spark is shutting down anyway
            }
            if (forwarder != null) {
                forwarder.uninstall();
                forwarder = null;
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    @Override
    public void onExecutorAdded(SparkListenerExecutorAdded e) {
        offerSafely(e);
    }

    @Override
    public void onExecutorRemoved(SparkListenerExecutorRemoved e) {
        offerSafely(e);
    }

    /**
     * SQL and Spark Connect events arrive here, with every other event that is not Spark core's
     * (streaming queries', third-party libraries'): only those the agent uses are taken.
     */
    @Override
    public void onOtherEvent(SparkListenerEvent e) {
        try {
            if (EventFilter.FORWARDED_OTHER_EVENTS.contains(e.getClass().getName())) {
                offer(e);
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    // ---- deliberately not sent: nothing the agent uses (docs/wire-protocol.md § Events) ----

    @Override
    public void onUnpersistRDD(SparkListenerUnpersistRDD e) {
    }

    @Override
    public void onExecutorExcluded(SparkListenerExecutorExcluded e) {
    }

    @Override
    public void onExecutorExcludedForStage(SparkListenerExecutorExcludedForStage e) {
    }

    @Override
    public void onNodeExcludedForStage(SparkListenerNodeExcludedForStage e) {
    }

    @Override
    public void onExecutorUnexcluded(SparkListenerExecutorUnexcluded e) {
    }

    @Override
    public void onNodeExcluded(SparkListenerNodeExcluded e) {
    }

    @Override
    public void onNodeUnexcluded(SparkListenerNodeUnexcluded e) {
    }

    @Override
    public void onUnschedulableTaskSetAdded(SparkListenerUnschedulableTaskSetAdded e) {
    }

    @Override
    public void onUnschedulableTaskSetRemoved(SparkListenerUnschedulableTaskSetRemoved e) {
    }

    @Override
    public void onSpeculativeTaskSubmitted(SparkListenerSpeculativeTaskSubmitted e) {
    }

    @Override
    public void onResourceProfileAdded(SparkListenerResourceProfileAdded e) {
    }

    @Override
    public void onEnvironmentUpdate(SparkListenerEnvironmentUpdate e) {
    }

    @Override
    public void onBlockManagerAdded(SparkListenerBlockManagerAdded e) {
    }

    @Override
    public void onBlockManagerRemoved(SparkListenerBlockManagerRemoved e) {
    }

    @Override
    public void onBlockUpdated(SparkListenerBlockUpdated e) {
    }

    @Override
    public void onExecutorMetricsUpdate(SparkListenerExecutorMetricsUpdate e) {
        // A heartbeat: every executor's once per spark.executor.heartbeatInterval (10 s). Only
        // those with memory metrics are queued; their accumulator updates are never read.
        try {
            if (!e.executorUpdates().isEmpty()) {
                offer(e);
            }
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    @Override
    public void onStageExecutorMetrics(SparkListenerStageExecutorMetrics e) {
    }

    @Override
    public void onTaskGettingResult(SparkListenerTaskGettingResult e) {
    }

    // ---- helpers (bus thread) ----

    private StageCounters counters(int stageId, int attemptId) {
        if (stageId == lastStageId && attemptId == lastAttemptId) {
            return lastCounters;
        }
        StageCounters c = stages.get(stageId, attemptId);
        if (c == null && enabled) {
            c = newCounters(stageId, attemptId);
        }
        if (c != null) {
            lastStageId = stageId;
            lastAttemptId = attemptId;
            lastCounters = c;
        }
        return c;
    }

    private StageCounters newCounters(int stageId, int attemptId) {
        if (stages.size() >= config.maxLiveEntities) {
            untrackedTaskEvents.lazySet(untrackedTaskEvents.get() + 1);
            if (!untrackedLogged) {
                untrackedLogged = true;
                LOG.warn("sparkscope: {} live stage attempts (spark.sparkscope.maxLiveEntities); "
                        + "new ones get no progress lines", stages.size());
            }
            return null;
        }
        StageCounters c = new StageCounters(stageId, attemptId);
        stages.put(c);
        newStages.add(c);
        return c;
    }

    private void retire(StageCounters c) {
        stages.remove(c);
        c.retired = true;
        if (c == lastCounters) {
            lastStageId = -1;
            lastAttemptId = -1;
            lastCounters = null;
        }
    }

    private void offerSafely(SparkListenerEvent e) {
        try {
            offer(e);
        } catch (Throwable t) {
            callbackFailed(t);
        }
    }

    private void offer(SparkListenerEvent e) {
        if (ring == null) {
            return;
        }
        if (!ring.offer(e)) {
            queueDropped.lazySet(queueDropped.get() + 1);
            long now = System.nanoTime();
            if (lastFullLog == Long.MIN_VALUE || now - lastFullLog > FULL_LOG_INTERVAL_NANOS) {
                lastFullLog = now;
                LOG.warn("sparkscope: event queue full ({} events), dropping; {} dropped so far",
                        config.queueCapacity, queueDropped.get());
            }
        }
    }

    private void callbackFailed(Throwable t) {
        if (!errorLogged) {
            errorLogged = true;
            LOG.error("sparkscope: listener callback failed (logged once)", t);
        }
    }
}
