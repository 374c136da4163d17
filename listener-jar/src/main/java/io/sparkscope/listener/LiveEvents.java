package io.sparkscope.listener;

import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.spark.scheduler.SparkListenerApplicationEnd;
import org.apache.spark.scheduler.SparkListenerApplicationStart;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.scheduler.SparkListenerExecutorMetricsUpdate;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.StageInfo;

/**
 * What each drained event does: the line it sends, and what it starts or ends in the live state,
 * which a (re)connected agent is sent whole as its snapshot. The live state is kept current
 * while the agent is away. Sender thread only.
 */
final class LiveEvents {
    private final LiveState live;
    private final EventFilter filter;
    private final Progress progress;
    private final Connector agent;
    private final LineCounts counts;
    private final Hello hello;
    private final Map<String, Method> accessors = new HashMap<>();
    private final SqlMetrics sqlMetrics;
    private final ExecutorPeaks executorPeaks;

    LiveEvents(LiveState live, EventFilter filter, Progress progress, Connector agent,
            LineCounts counts, Hello hello, ExecutorPeaks executorPeaks) {
        this(live, filter, progress, agent, counts, hello, new SqlMetrics(), executorPeaks);
    }

    LiveEvents(LiveState live, EventFilter filter, Progress progress, Connector agent,
            LineCounts counts, Hello hello, SqlMetrics sqlMetrics, ExecutorPeaks executorPeaks) {
        this.sqlMetrics = sqlMetrics;
        this.executorPeaks = executorPeaks;
        this.live = live;
        this.filter = filter;
        this.progress = progress;
        this.agent = agent;
        this.counts = counts;
        this.hello = hello;
    }

    void handle(SparkListenerEvent e) {
        if (e instanceof SparkListenerStageSubmitted) {
            SparkListenerStageSubmitted s = (SparkListenerStageSubmitted) e;
            StageInfo info = s.stageInfo();
            sticky(LiveState.Kind.STAGE, LiveState.stageKey(info.stageId(), info.attemptNumber()),
                    EventFilter.stageSubmitted(s));
        } else if (e instanceof SparkListenerTaskEnd) {
            // Only failed task ends are queued. The first of each live attempt stays in the
            // snapshot: its error is the root cause a notebook shows.
            SparkListenerTaskEnd t = (SparkListenerTaskEnd) e;
            String key = LiveState.stageKey(t.stageId(), t.stageAttemptId());
            if (!live.wantsFailedTaskEnd(key)) {
                forward(e);
                return;
            }
            String line = filter.serialize(e);
            if (line == null) {
                counts.dropped++;
                return;
            }
            live.failedTaskEnd(key, line);
            agent.writeLine(line);
        } else if (e instanceof SparkListenerStageCompleted) {
            StageInfo info = ((SparkListenerStageCompleted) e).stageInfo();
            progress.write();
            String key = LiveState.stageKey(info.stageId(), info.attemptNumber());
            String line = filter.serialize(e);
            if (line == null) {
                counts.dropped++;
                return;
            }
            // While a running job includes it, the completed attempt stays in the snapshot: an
            // agent that missed the completion learns it (and the final counts) from there.
            if (live.stageNeeded(info.stageId())) {
                live.complete(key, line);
            } else {
                live.remove(LiveState.Kind.STAGE, key);
            }
            agent.writeLine(line);
        } else if (e instanceof SparkListenerJobStart) {
            SparkListenerJobStart j = (SparkListenerJobStart) e;
            SparkListenerEvent copy = filter.jobStart(j);
            String line = copy == null ? null : filter.serialize(copy);
            if (line == null) {
                counts.dropped++; // never send the unfiltered original
            } else {
                live.putJob(Integer.toString(j.jobId()), line, stageIds(j));
                agent.writeLine(line);
            }
        } else if (e instanceof SparkListenerJobEnd) {
            progress.write();
            // Its stage attempts are over with it (Spark completes or cancels them first); those
            // another running job shares stay.
            live.removeJob(Integer.toString(((SparkListenerJobEnd) e).jobId()));
            forward(e);
        } else if (e instanceof SparkListenerExecutorAdded) {
            sticky(LiveState.Kind.EXECUTOR, ((SparkListenerExecutorAdded) e).executorId(), e);
        } else if (e instanceof SparkListenerExecutorRemoved) {
            String id = ((SparkListenerExecutorRemoved) e).executorId();
            live.remove(LiveState.Kind.EXECUTOR, id);
            executorPeaks.remove(id);
            forward(e);
        } else if (e instanceof SparkListenerExecutorMetricsUpdate) {
            // Kept (as peaks) while the agent is away; sent only while it is there.
            String line = executorPeaks.update((SparkListenerExecutorMetricsUpdate) e);
            if (line != null && agent.connected()) {
                agent.writeLine(line);
            }
        } else if (e instanceof SparkListenerApplicationStart) {
            SparkListenerApplicationStart a = (SparkListenerApplicationStart) e;
            if (a.appId().isDefined()) {
                hello.applicationStarted(a.appId().get());
            }
            sticky(LiveState.Kind.APP, "app", e);
        } else if (e instanceof SparkListenerApplicationEnd) {
            progress.write();
            forward(e);
        } else {
            handleOther(e);
        }
    }

    /** SQL and Connect events, which this jar sees only by class name. */
    private void handleOther(SparkListenerEvent e) {
        String name = e.getClass().getName();
        if (name.startsWith(EventFilter.SQL_UI)) {
            String kind = name.substring(EventFilter.SQL_UI.length());
            String id = key(e, "executionId");
            if (kind.equals("SparkListenerSQLExecutionStart")) {
                if (sticky(LiveState.Kind.SQL, id, e) && id != null) {
                    sqlMetrics.track(Long.parseLong(id), filter.planAccumulators());
                }
                return;
            }
            if (kind.equals("SparkListenerSQLAdaptiveExecutionUpdate")) {
                // Only the latest plan stays in the snapshot, beside the execution's start.
                String line = filter.serialize(e);
                if (line == null) {
                    counts.dropped++;
                    return;
                }
                if (id != null && live.latest(LiveState.Kind.SQL, id, line)) {
                    sqlMetrics.track(Long.parseLong(id), filter.planAccumulators());
                }
                agent.writeLine(line);
                return;
            }
            if (kind.equals("SparkListenerSQLExecutionEnd")) {
                remove(LiveState.Kind.SQL, id);
                if (id != null) {
                    // The final values go out before the end, so the agent ends it complete.
                    sqlMetrics.end(Long.parseLong(id), agent, System.currentTimeMillis());
                }
            }
        } else if (name.startsWith(EventFilter.CONNECT)) {
            switch (name.substring(EventFilter.CONNECT.length())) {
                case "ServiceStarted":
                    sticky(LiveState.Kind.APP, "connect-service", e);
                    return;
                case "ServiceEnd":
                    live.remove(LiveState.Kind.APP, "connect-service");
                    break;
                case "SessionStarted":
                    sticky(LiveState.Kind.SESSION, key(e, "sessionId"), e);
                    return;
                case "SessionClosed":
                    remove(LiveState.Kind.SESSION, key(e, "sessionId"));
                    break;
                case "OperationStarted":
                    sticky(LiveState.Kind.OPERATION, key(e, "jobTag"), e);
                    return;
                case "OperationAnalyzed":
                case "OperationReadyForExecution":
                    appendSticky(LiveState.Kind.OPERATION, key(e, "jobTag"), e);
                    return;
                case "OperationFinished":
                case "OperationFailed":
                case "OperationCanceled":
                case "OperationClosed":
                    // No longer running: clients often never release a finished operation, and
                    // keeping those would make every resend replay long-dead operations.
                    remove(LiveState.Kind.OPERATION, key(e, "jobTag"));
                    break;
                default:
                    break;
            }
        }
        forward(e);
    }

    /**
     * After the hello: the snapshot. Between its start and end lines goes the live state in
     * original order, each stage attempt with its current counters (read now, not the last line
     * sent); the agent replaces what it held as live with exactly this.
     */
    void snapshot() {
        agent.write(new Json("SparkscopeSnapshotStart").field("time", System.currentTimeMillis())
                .end());
        progress.refresh();
        for (String line : live.linesInOrder()) {
            agent.writeLine(line);
        }
        agent.write(new Json("SparkscopeSnapshotEnd").field("time", System.currentTimeMillis())
                .end());
        // Peaks outlive a restarted agent: each executor's since it started, after the snapshot.
        for (String line : executorPeaks.lines()) {
            agent.writeLine(line);
        }
        // The agent replaced its live SQL executions with the snapshot's: all values again.
        sqlMetrics.resendAll();
        sqlMetrics.write(agent, System.currentTimeMillis());
        agent.flush();
    }

    /**
     * The stage ids of a job, read from its stage infos: {@code stageIds()} returns a Scala Seq
     * whose type differs between Spark 3.5 and 4.x, so it is not linked against.
     */
    private static int[] stageIds(SparkListenerJobStart j) {
        try {
            scala.collection.Iterator<?> it =
                    ((scala.collection.Iterable<?>) j.productElement(2)).iterator();
            List<Integer> ids = new ArrayList<>();
            while (it.hasNext()) {
                ids.add(((StageInfo) it.next()).stageId());
            }
            int[] out = new int[ids.size()];
            for (int i = 0; i < out.length; i++) {
                out[i] = ids.get(i);
            }
            return out;
        } catch (RuntimeException e) {
            return new int[0];
        }
    }

    /** A live-state start event: kept serialized even while the agent is away. */
    private boolean sticky(LiveState.Kind kind, String key, SparkListenerEvent e) {
        String line = filter.serialize(e);
        if (line == null) {
            counts.dropped++;
            return false;
        }
        if (key != null) {
            live.put(kind, key, line);
        }
        agent.writeLine(line);
        return true;
    }

    /** Once per flush interval, with progress: the live SQL executions' changed metrics. */
    void writeSqlMetrics() {
        if (agent.connected()) {
            sqlMetrics.write(agent, System.currentTimeMillis());
        }
    }

    private void appendSticky(LiveState.Kind kind, String key, SparkListenerEvent e) {
        String line = filter.serialize(e);
        if (line == null) {
            counts.dropped++;
            return;
        }
        if (key != null) {
            live.append(kind, key, line);
        }
        agent.writeLine(line);
    }

    private void remove(LiveState.Kind kind, String key) {
        if (key != null) {
            live.remove(kind, key);
        }
    }

    /** Any other event: sent if connected, otherwise counted as dropped without serializing. */
    private void forward(SparkListenerEvent e) {
        if (!agent.connected()) {
            counts.dropped++;
            return;
        }
        String line = filter.serialize(e);
        if (line == null) {
            counts.dropped++;
            return;
        }
        agent.writeLine(line);
    }

    /** A live-state key read reflectively: SQL and Connect events are not linked against. */
    private String key(SparkListenerEvent e, String accessor) {
        String cacheKey = e.getClass().getName() + '#' + accessor;
        try {
            Method m = accessors.get(cacheKey);
            if (m == null) {
                m = e.getClass().getMethod(accessor);
                accessors.put(cacheKey, m);
            }
            Object v = m.invoke(e);
            return v == null ? null : v.toString();
        } catch (ReflectiveOperationException | RuntimeException ex) {
            return null; // still forwarded, just not remembered as live
        }
    }
}
