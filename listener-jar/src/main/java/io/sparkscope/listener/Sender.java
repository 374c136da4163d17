package io.sparkscope.listener;

import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.net.Socket;
import java.io.OutputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.SparkConf;
import org.apache.spark.scheduler.SparkListenerApplicationEnd;
import org.apache.spark.scheduler.SparkListenerApplicationStart;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerJobEnd;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.StageInfo;
import org.apache.spark.util.JsonProtocol;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The sender thread: owns the agent connection, serializes queued events with Spark's own
 * JsonProtocol, keeps the live (sticky) state for resends, and turns stage counters into progress
 * lines every flush interval. Nothing here runs on Spark's listener-bus thread.
 */
final class Sender implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Sender.class);

    static final int PROTOCOL = 2;
    private static final int CONNECT_TIMEOUT_MS = 1_000;
    private static final int HELLO_TIMEOUT_MS = 5_000;
    private static final int MAX_ANSWER_BYTES = 64 * 1024;
    private static final long MIN_BACKOFF_MS = 100;
    /**
     * Reconnect attempts are at most this far apart, so the listener is back within a second of
     * the agent's return; a refused connect costs next to nothing.
     */
    private static final long MAX_BACKOFF_MS = 1_000;
    /** A connection that lasted this long resets the backoff; a shorter one does not. */
    private static final long STABLE_CONNECTION_NANOS = 5_000_000_000L;
    private static final int WRITE_BUFFER = 64 * 1024;

    /** The only JobStart / StageSubmitted properties that leave the driver (protocol § Events). */
    static final String[] KEPT_PROPERTIES = {
        "spark.job.tags", "spark.job.description", "callSite.short", "spark.sql.execution.id",
        "spark.sql.execution.root.id", "spark.jobGroup.id", "spark.scheduler.pool",
    };

    private static final String SQL_UI = "org.apache.spark.sql.execution.ui.";
    /** Free text (a statement, an error) is cut to this many characters before it leaves. */
    static final int MAX_TEXT = 4096;
    /**
     * The only fields of these events that leave the driver: SQL events lose the session's
     * modified confs and the plans, Connect events their free-form extra tags.
     */
    static final Map<String, Set<String>> KEPT_FIELDS = Map.of(
            SQL_UI + "SparkListenerSQLExecutionStart",
            Set.of("Event", "executionId", "rootExecutionId", "description", "time", "jobTags",
                    "jobGroupId", "queryId"),
            SQL_UI + "SparkListenerSQLExecutionEnd",
            Set.of("Event", "executionId", "time", "errorMessage", "queryId"));
    static final Set<String> CONNECT_DROPPED_FIELDS = Set.of("extraTags");
    private static final String CONNECT = "org.apache.spark.sql.connect.service.SparkListenerConnect";

    private final ListenerConfig config;
    private final SparkConf conf;
    private final EventRing ring;
    private final ConcurrentLinkedQueue<StageCounters> newStages;
    private final AtomicLong queueDropped;
    private final AtomicLong untrackedTaskEvents;
    private final Thread thread;
    private final long createdAt = System.currentTimeMillis();
    /** This run of the driver: reconnects carry it, so the agent tells them from a second driver. */
    private final String runId = java.util.UUID.randomUUID().toString();
    private final long flushNanos;
    private final long pollNanos;

    private volatile boolean stopping;

    // Everything below belongs to the sender thread.
    private final LiveState live;
    private final List<StageCounters> tracked = new ArrayList<>();
    private final long[] snap = new long[StageCounters.SNAPSHOT_SIZE];
    private final int[] snapDurations = new int[Durations.BUCKETS];
    private final Map<String, Method> accessors = new HashMap<>();
    private final ObjectMapper mapper = new ObjectMapper();
    private Constructor<?> jobStartCtor;

    private AgentLink link;
    /** TLS to the agent, when spark.sparkscope.tls.trustCert names what to trust. */
    private final AgentTls tls;
    private OutputStream out;
    private long connectedAtNanos;
    private long nextConnectNanos;
    private long backoffMs = MIN_BACKOFF_MS;
    private boolean everConnected;
    private boolean unavailableLogged;
    private String lastRefusal;
    private String appIdFromEvent;

    private long pendingLines; // written to the buffer, not yet flushed
    private long sent;
    private long dataLines; // non-stats lines written; drives "did something change"
    private long localDropped;
    private long reconnects;
    private long lastStatsData = -1;
    private long lastStatsDropped = -1;
    private long lastStatsQueue = -1;
    private long lastStatsReconnects = -1;
    private String lastStatsBus = "";
    private final Map<String, Boolean> serializeFailureLogged = new HashMap<>();
    /** Stage ids of each running job, from its JobStart: a completed stage stays live for them. */
    private final Map<Integer, int[]> jobStages = new HashMap<>();
    private final BusDrops busDrops = new BusDrops();

    Sender(ListenerConfig config, SparkConf conf, EventRing ring,
            ConcurrentLinkedQueue<StageCounters> newStages, AtomicLong queueDropped,
            AtomicLong untrackedTaskEvents) {
        this.config = config;
        this.conf = conf;
        this.ring = ring;
        this.newStages = newStages;
        this.queueDropped = queueDropped;
        this.untrackedTaskEvents = untrackedTaskEvents;
        this.live = new LiveState(config.maxLiveEntities);
        AgentTls t = null;
        if (!config.tlsTrust.isEmpty()) {
            try {
                t = new AgentTls(config.tlsTrust);
            } catch (IOException | java.security.GeneralSecurityException e) {
                // Never fall back to plain text when TLS was asked for: nothing is sent then.
                LOG.error("sparkscope: cannot use {} ({}); the listener will not connect",
                        ListenerConfig.TLS_TRUST, e.toString());
                stopping = true;
            }
        }
        this.tls = t;
        this.flushNanos = TimeUnit.MILLISECONDS.toNanos(config.flushIntervalMs);
        // Drain the ring ten times per flush interval, so bursts do not fill it and job and stage
        // changes pass on quickly: a notebook's progress view waits on them.
        this.pollNanos = Math.max(1_000_000L, Math.min(flushNanos / 10, 10_000_000L));
        this.thread = new Thread(this, "sparkscope-sender");
        this.thread.setDaemon(true);
    }

    void start() {
        thread.start();
    }

    /** Called on the bus thread at application end: drain, flush, close, within a time bound. */
    void stop(long timeoutMs) throws InterruptedException {
        stopping = true;
        LockSupport.unpark(thread);
        thread.join(timeoutMs);
    }

    @Override
    public void run() {
        try {
            SparkscopeListener.warmUp(config);
        } catch (Throwable t) {
            LOG.debug("sparkscope: JIT warm-up skipped", t); // only costs speed, never correctness
        }
        try {
            loop();
        } catch (Throwable t) {
            LOG.error("sparkscope: sender thread died; events are no longer sent", t);
        } finally {
            close(true);
        }
    }

    private void loop() {
        long nextFlush = System.nanoTime() + flushNanos;
        while (true) {
            // Read before draining, so everything offered before stop() is still sent.
            boolean last = stopping;
            long now = System.nanoTime();
            if (link == null && !last && now - nextConnectNanos >= 0) {
                connect();
            }
            // Commands (job cancel) are read every poll, not once per flush interval.
            probe();
            // Adopt new stages before draining: their StageSubmitted is then already in the ring.
            adoptNewStages();
            Object e;
            boolean drained = false;
            while ((e = ring.poll()) != null) {
                handle((SparkListenerEvent) e);
                drained = true;
            }
            now = System.nanoTime();
            if (last || now - nextFlush >= 0) {
                tick();
                nextFlush = now + flushNanos;
            } else if (drained) {
                // Job, stage and operation changes go out within one poll, not one flush
                // interval: that is what a notebook's progress view waits for. Task counts
                // still travel coalesced, once per interval.
                flush();
            }
            if (last) {
                LOG.info("sparkscope: listener stopped ({} lines sent, {} dropped)", sent,
                        dropped());
                return;
            }
            LockSupport.parkNanos(Math.max(0, Math.min(pollNanos, nextFlush - now)));
        }
    }

    /** Once per flush interval: notice a closed agent, progress lines, stats, flush. */
    private void tick() {
        progress(false);
        stats();
        flush();
    }

    // ---- events ----

    private void handle(SparkListenerEvent e) {
        if (e instanceof SparkListenerStageSubmitted) {
            SparkListenerStageSubmitted s = (SparkListenerStageSubmitted) e;
            StageInfo info = s.stageInfo();
            sticky(LiveState.Kind.STAGE, info.stageId() + "." + info.attemptNumber(),
                    new SparkListenerStageSubmitted(info, filter(s.properties())));
        } else if (e instanceof SparkListenerStageCompleted) {
            StageInfo info = ((SparkListenerStageCompleted) e).stageInfo();
            progress(false);
            String key = info.stageId() + "." + info.attemptNumber();
            String line = serialize(e);
            if (line == null) {
                localDropped++;
                return;
            }
            // While a running job includes it, the completed attempt stays in the snapshot: an
            // agent that missed the completion learns it (and the final counts) from there.
            if (neededByRunningJob(info.stageId())) {
                live.complete(LiveState.Kind.STAGE, key, line);
            } else {
                live.remove(LiveState.Kind.STAGE, key);
            }
            writeLine(line);
        } else if (e instanceof SparkListenerJobStart) {
            SparkListenerJobStart j = (SparkListenerJobStart) e;
            SparkListenerEvent copy = filteredJobStart(j);
            if (copy == null) {
                localDropped++; // never send the unfiltered original
            } else {
                jobStages.put(j.jobId(), stageIds(j));
                sticky(LiveState.Kind.JOB, Integer.toString(j.jobId()), copy);
            }
        } else if (e instanceof SparkListenerJobEnd) {
            progress(false);
            int jobId = ((SparkListenerJobEnd) e).jobId();
            live.remove(LiveState.Kind.JOB, Integer.toString(jobId));
            int[] ids = jobStages.remove(jobId);
            if (ids != null) {
                // Its stage attempts are over with it (Spark completes or cancels them first);
                // those another running job shares stay.
                for (int id : ids) {
                    if (!neededByRunningJob(id)) {
                        String prefix = id + ".";
                        live.removeIf(LiveState.Kind.STAGE, k -> k.startsWith(prefix));
                    }
                }
            }
            forward(e);
        } else if (e instanceof SparkListenerExecutorAdded) {
            sticky(LiveState.Kind.EXECUTOR, ((SparkListenerExecutorAdded) e).executorId(), e);
        } else if (e instanceof SparkListenerExecutorRemoved) {
            live.remove(LiveState.Kind.EXECUTOR, ((SparkListenerExecutorRemoved) e).executorId());
            forward(e);
        } else if (e instanceof SparkListenerApplicationStart) {
            SparkListenerApplicationStart a = (SparkListenerApplicationStart) e;
            if (a.appId().isDefined()) {
                appIdFromEvent = a.appId().get();
            }
            sticky(LiveState.Kind.APP, "app", e);
        } else if (e instanceof SparkListenerApplicationEnd) {
            progress(false);
            forward(e);
        } else {
            handleOther(e);
        }
    }

    /** SQL and Connect events, which this jar sees only by class name. */
    private void handleOther(SparkListenerEvent e) {
        String name = e.getClass().getName();
        if (name.startsWith(SQL_UI)) {
            String kind = name.substring(SQL_UI.length());
            if (kind.equals("SparkListenerSQLExecutionStart")) {
                sticky(LiveState.Kind.SQL, key(e, "executionId"), e);
                return;
            }
            if (kind.equals("SparkListenerSQLExecutionEnd")) {
                remove(LiveState.Kind.SQL, key(e, "executionId"));
            }
        } else if (name.startsWith(CONNECT)) {
            switch (name.substring(CONNECT.length())) {
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

    private boolean neededByRunningJob(int stageId) {
        for (int[] ids : jobStages.values()) {
            for (int id : ids) {
                if (id == stageId) {
                    return true;
                }
            }
        }
        return false;
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
    private void sticky(LiveState.Kind kind, String key, SparkListenerEvent e) {
        String line = serialize(e);
        if (line == null) {
            localDropped++;
            return;
        }
        if (key != null) {
            live.put(kind, key, line);
        }
        writeLine(line);
    }

    private void appendSticky(LiveState.Kind kind, String key, SparkListenerEvent e) {
        String line = serialize(e);
        if (line == null) {
            localDropped++;
            return;
        }
        if (key != null) {
            live.append(kind, key, line);
        }
        writeLine(line);
    }

    private void remove(LiveState.Kind kind, String key) {
        if (key != null) {
            live.remove(kind, key);
        }
    }

    /** Any other event: sent if connected, otherwise counted as dropped without serializing. */
    private void forward(SparkListenerEvent e) {
        if (out == null) {
            localDropped++;
            return;
        }
        String line = serialize(e);
        if (line == null) {
            localDropped++;
            return;
        }
        writeLine(line);
    }

    private String serialize(SparkListenerEvent e) {
        Throwable failure = null;
        // Spark mutates StageInfo & co. on its own threads; a second try usually succeeds.
        for (int attempt = 0; attempt < 2; attempt++) {
            try {
                return trim(e.getClass().getName(), JsonProtocol.sparkEventToJsonString(e));
            } catch (Throwable t) {
                failure = t;
            }
        }
        if (serializeFailureLogged.put(e.getClass().getName(), Boolean.TRUE) == null) {
            LOG.warn("sparkscope: cannot serialize {} (dropped; logged once per class)",
                    e.getClass().getName(), failure);
        }
        return null;
    }

    /**
     * What of an SQL or Connect event may leave the driver (docs/wire-protocol.md § What leaves
     * the driver): only the kept fields, and free text cut to {@link #MAX_TEXT}. Other events
     * are returned as they are.
     */
    String trim(String className, String json) throws java.io.IOException {
        Set<String> kept = KEPT_FIELDS.get(className);
        boolean connect = className.startsWith(CONNECT);
        if (kept == null && !connect) {
            return json;
        }
        com.fasterxml.jackson.databind.node.ObjectNode node =
                (com.fasterxml.jackson.databind.node.ObjectNode) mapper.readTree(json);
        java.util.Iterator<Map.Entry<String, JsonNode>> fields = node.properties().iterator();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> f = fields.next();
            if (kept != null ? !kept.contains(f.getKey()) : CONNECT_DROPPED_FIELDS.contains(f.getKey())) {
                fields.remove();
            } else if (f.getValue().isTextual() && f.getValue().asText().length() > MAX_TEXT) {
                f.setValue(node.textNode(f.getValue().asText().substring(0, MAX_TEXT) + "…"));
            }
        }
        return mapper.writeValueAsString(node);
    }

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

    static Properties filter(Properties props) {
        if (props == null) {
            return null;
        }
        Properties kept = new Properties();
        for (String k : KEPT_PROPERTIES) {
            String v = props.getProperty(k);
            if (v != null) {
                kept.setProperty(k, v);
            }
        }
        return kept;
    }

    /**
     * A copy of the JobStart with filtered properties. Built reflectively so the jar does not
     * link against {@code stageInfos()}, whose Scala Seq type differs between Spark 3.5 and 4.x.
     */
    private SparkListenerEvent filteredJobStart(SparkListenerJobStart j) {
        try {
            if (jobStartCtor == null) {
                for (Constructor<?> c : SparkListenerJobStart.class.getConstructors()) {
                    if (c.getParameterCount() == 4) {
                        jobStartCtor = c;
                    }
                }
            }
            return (SparkListenerEvent) jobStartCtor.newInstance(j.jobId(), j.time(),
                    j.productElement(2), filter(j.properties()));
        } catch (Throwable t) {
            if (serializeFailureLogged.put("JobStart copy", Boolean.TRUE) == null) {
                LOG.warn("sparkscope: cannot copy SparkListenerJobStart; job starts are dropped", t);
            }
            return null;
        }
    }

    // ---- progress and stats ----

    private void adoptNewStages() {
        StageCounters c;
        while ((c = newStages.poll()) != null) {
            tracked.add(c);
        }
    }

    /**
     * One progress line per stage attempt whose counters changed ({@code all}: every live one).
     * Retired attempts get their final line and are forgotten.
     */
    private void progress(boolean all) {
        long now = System.currentTimeMillis();
        int keep = 0;
        for (int i = 0; i < tracked.size(); i++) {
            StageCounters c = tracked.get(i);
            boolean retired = c.retired; // read first: a retired attempt's snapshot is final
            long seq = c.snapshot(snap, snapDurations);
            if (seq >= 0 && (all || seq != c.sentSeq)) {
                c.sentSeq = seq;
                String line = progressLine(c, now);
                live.progress(LiveState.Kind.STAGE, c.stageId + "." + c.attemptId, line);
                writeLine(line);
            }
            if (!retired || seq < 0) {
                tracked.set(keep++, c);
            }
        }
        for (int i = tracked.size() - 1; i >= keep; i--) {
            tracked.remove(i);
        }
    }

    private String progressLine(StageCounters c, long now) {
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

    private long dropped() {
        return queueDropped.get() + localDropped;
    }

    private void stats() {
        if (out == null) {
            return; // nobody to tell; the next connection gets a fresh line
        }
        long dropped = dropped();
        long queue = ring.size();
        String bus = busDrops.read();
        if (dataLines == lastStatsData && dropped == lastStatsDropped && queue == lastStatsQueue
                && reconnects == lastStatsReconnects && bus.equals(lastStatsBus)) {
            return;
        }
        lastStatsData = dataLines;
        lastStatsDropped = dropped;
        lastStatsQueue = queue;
        lastStatsReconnects = reconnects;
        lastStatsBus = bus;
        String line = new Json("SparkscopeListenerStats")
                .field("time", System.currentTimeMillis())
                .field("sent", sent + pendingLines)
                .field("dropped", dropped)
                .field("queueSize", queue)
                .field("reconnects", reconnects)
                .field("liveEvicted", live.evicted())
                .field("untrackedTaskEvents", untrackedTaskEvents.get())
                .raw("busDropped", bus)
                .end();
        write(line);
    }

    // ---- connection ----

    private void connect() {
        Socket sock = null;
        SocketChannel ch = null;
        try {
            if (tls != null) {
                sock = tls.connect(config.agentAddress(), config.agentHost, CONNECT_TIMEOUT_MS,
                        HELLO_TIMEOUT_MS);
            } else {
                ch = SocketChannel.open();
                ch.socket().connect(config.agentAddress(), CONNECT_TIMEOUT_MS);
                ch.socket().setTcpNoDelay(true);
                ch.socket().setSoTimeout(HELLO_TIMEOUT_MS);
                sock = ch.socket();
            }
            OutputStream o = new BufferedOutputStream(sock.getOutputStream(), 4096);
            InputStream in = sock.getInputStream();
            String nonce = Handshake.nonce();
            String appId = appId();
            o.write(hello(appId, nonce).getBytes(StandardCharsets.UTF_8));
            o.write('\n');
            o.flush();
            JsonNode challenge = mapper.readTree(readLine(in));
            if (refused(challenge, sock)) {
                return;
            }
            String agentNonce = challenge.path("nonce").asText("");
            if (!config.token.isEmpty()) {
                // The agent proves it knows the token before anything is said: an impostor on
                // the agent's port learns nothing and can send no command.
                String proof = challenge.path("proof").asText("");
                if (!Handshake.agentProved(config.token, appId, runId, nonce, agentNonce, proof)) {
                    String why = "it could not prove it knows the token: not an agent of ours";
                    if (!why.equals(lastRefusal)) {
                        lastRefusal = why;
                        LOG.error("sparkscope: the peer at {} is refused: {}; retrying with "
                                + "backoff", config.agentString(), why);
                    }
                    closeQuietly(sock);
                    backOff();
                    return;
                }
            }
            String mine = config.token.isEmpty() ? ""
                    : Handshake.listenerProof(config.token, appId, runId, nonce, agentNonce);
            o.write(new Json("SparkscopeProof").field("proof", mine).end()
                    .getBytes(StandardCharsets.UTF_8));
            o.write('\n');
            o.flush();
            JsonNode node = mapper.readTree(readLine(in));
            if (refused(node, sock)) {
                return;
            }
            link = tls != null
                    ? new AgentLink.Tls((javax.net.ssl.SSLSocket) sock, config.writeTimeoutMs,
                            WRITE_BUFFER)
                    : new AgentLink.Plain(ch, config.writeTimeoutMs, WRITE_BUFFER);
            out = link.out();
            connectedAtNanos = System.nanoTime();
            if (everConnected) {
                reconnects++;
            }
            everConnected = true;
            unavailableLogged = false;
            lastRefusal = null;
            LOG.info("sparkscope: connected to agent {}{} ({})", config.agentString(),
                    tls != null ? " over TLS" : "", challenge.path("agent").asText("?"));
            sent++; // the hello
            resend();
        } catch (IOException | RuntimeException e) {
            closeQuietly(sock);
            if (!unavailableLogged) {
                unavailableLogged = true;
                LOG.warn("sparkscope: agent {} unavailable ({}); retrying with backoff up to {} s, "
                        + "dropping lines meanwhile", config.agentString(), e.toString(),
                        MAX_BACKOFF_MS / 1000);
            }
            backOff();
        }
    }

    /** Whether the agent said no (logged once per distinct reason); the connection is closed. */
    private boolean refused(JsonNode node, Socket ch) {
        if (node != null && node.path("ok").asBoolean(false)) {
            return false;
        }
        String error = node == null ? "empty answer" : node.path("error").asText("no reason given");
        if (!error.equals(lastRefusal)) {
            lastRefusal = error;
            LOG.warn("sparkscope: agent {} refused the listener: {} (retrying with backoff)",
                    config.agentString(), error);
        }
        closeQuietly(ch);
        backOff();
        return true;
    }

    /**
     * After the hello: the snapshot. Between its start and end lines go the live state in
     * original order and every live stage's counters; the agent replaces what it held as live
     * with exactly this.
     */
    private void resend() {
        write(new Json("SparkscopeSnapshotStart").field("time", System.currentTimeMillis()).end());
        for (String line : live.linesInOrder()) {
            writeLine(line);
        }
        progress(true);
        write(new Json("SparkscopeSnapshotEnd").field("time", System.currentTimeMillis()).end());
        flush();
    }

    private void backOff() {
        nextConnectNanos = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoffMs);
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
    }

    private String appId() {
        return conf.get("spark.app.id", appIdFromEvent == null ? "" : appIdFromEvent);
    }

    private String hello(String appId, String nonce) {
        long startTime;
        try {
            startTime = Long.parseLong(conf.get("spark.app.startTime", ""));
        } catch (NumberFormatException e) {
            startTime = createdAt;
        }
        return new Json("SparkscopeHello")
                .field("protocol", PROTOCOL)
                .field("appId", appId)
                .field("appName", conf.get("spark.app.name", ""))
                .field("sparkVersion", sparkVersion())
                .field("listenerVersion", SparkscopeListener.VERSION)
                .field("runId", runId)
                .field("nonce", nonce)
                .field("startTime", startTime)
                .field("sparkUser", sparkUser())
                .field("master", conf.get("spark.master", ""))
                .field("taskEvents", "coalesced")
                .field("uiUrl", uiUrl())
                .field("classicSession", conf.getBoolean(ListenerConfig.CLASSIC_SESSION, false))
                .end();
    }

    /**
     * Where Spark's UI (and its REST API) answers, for the agent's reconciliation: empty when
     * the UI is off ({@code spark.ui.enabled=false}). The driver's own address, not a proxied one:
     * {@code spark.ui.proxyBase} and reverse proxies only change the links the UI writes.
     */
    private String uiUrl() {
        String override = conf.get(ListenerConfig.UI_URL, "");
        if (!override.isEmpty() || !conf.getBoolean("spark.ui.enabled", true)) {
            return override;
        }
        try {
            scala.Option<org.apache.spark.SparkContext> sc =
                    org.apache.spark.SparkContext$.MODULE$.getActive();
            if (sc.isDefined() && sc.get().uiWebUrl().isDefined()) {
                return sc.get().uiWebUrl().get();
            }
        } catch (Throwable t) {
            LOG.debug("sparkscope: no UI address", t);
        }
        return "";
    }

    private static String sparkVersion() {
        try {
            return org.apache.spark.package$.MODULE$.SPARK_VERSION();
        } catch (Throwable t) {
            return "unknown";
        }
    }

    private static String sparkUser() {
        try {
            return org.apache.spark.util.Utils.getCurrentUserName();
        } catch (Throwable t) {
            return System.getProperty("user.name", "");
        }
    }

    private static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream(128);
        while (buf.size() < MAX_ANSWER_BYTES) {
            int b = in.read();
            if (b < 0) {
                throw new EOFException("agent closed the connection during the hello");
            }
            if (b == '\n') {
                return buf.toString(StandardCharsets.UTF_8);
            }
            buf.write(b);
        }
        throw new IOException("hello answer longer than " + MAX_ANSWER_BYTES + " bytes");
    }

    /**
     * Reads what the agent sent since the last poll without blocking: command lines, carried out
     * as they complete, or EOF, which means the agent went away. Checking before a flush keeps
     * us from writing a batch into a dead socket.
     */
    private void probe() {
        if (link == null) {
            return;
        }
        try {
            for (String line : link.poll()) {
                command(line);
            }
        } catch (IOException | RuntimeException e) {
            connectionLost(e);
        }
    }

    /**
     * A command line from the agent (cancelJob, cancelJobsWithTag), answered with a
     * {@code SparkscopeCommandResult} once it has run. Runs on this thread; SparkContext.cancelJob
     * only posts to the DAG scheduler's event loop.
     */
    private void command(String line) {
        String id = "";
        String error;
        try {
            JsonNode node = mapper.readTree(line);
            String cmd = node == null ? "" : node.path("cmd").asText("");
            id = node == null ? "" : node.path("id").asText("");
            if ("cancelJob".equals(cmd) && node.path("jobId").canConvertToInt()) {
                int jobId = node.path("jobId").asInt();
                String reason = node.path("reason").asText("cancelled through sparkscope");
                error = Commands.cancelJob(jobId, reason);
                if (error == null) {
                    LOG.info("sparkscope: cancelled job {} at the agent's request ({})", jobId,
                            reason);
                }
            } else if ("cancelJobsWithTag".equals(cmd) && !node.path("tag").asText("").isEmpty()) {
                String tag = node.path("tag").asText();
                String reason = node.path("reason").asText("cancelled through sparkscope");
                error = Commands.cancelJobsWithTag(tag, reason);
                if (error == null) {
                    LOG.info("sparkscope: cancelled the jobs tagged {} at the agent's request ({})",
                            tag, reason);
                }
            } else {
                error = "unknown command";
                LOG.warn("sparkscope: ignored an unknown command from the agent: {}",
                        line.length() > 200 ? line.substring(0, 200) + "…" : line);
            }
        } catch (Exception e) { // a bad command must not end the connection
            error = e.toString();
            LOG.warn("sparkscope: could not carry out the agent's command: {}", error);
        }
        Json answer = new Json("SparkscopeCommandResult").field("id", id).field("ok", error == null);
        if (error != null) {
            answer.field("error", error);
        }
        write(answer.end());
        flush();
    }

    /** An event or progress line: counted as dropped when the agent is away. */
    private void writeLine(String line) {
        if (out == null) {
            localDropped++;
            return;
        }
        dataLines++;
        write(line);
    }

    private void write(String line) {
        try {
            out.write(line.getBytes(StandardCharsets.UTF_8));
            out.write('\n');
            pendingLines++;
        } catch (IOException | RuntimeException e) {
            localDropped++;
            connectionLost(e);
        }
    }

    private void flush() {
        if (out == null) {
            return;
        }
        try {
            out.flush();
            sent += pendingLines;
            pendingLines = 0;
        } catch (IOException | RuntimeException e) {
            connectionLost(e);
        }
    }

    private void connectionLost(Exception e) {
        localDropped += pendingLines;
        pendingLines = 0;
        LOG.warn("sparkscope: lost connection to agent {} ({}); reconnecting", config.agentString(),
                e.toString());
        close(false); // what is buffered would go into a dead socket
        // A connection closed right after its hello (an agent refusing, restarting, or a wrong
        // peer) must not turn into a tight reconnect loop.
        if (System.nanoTime() - connectedAtNanos >= STABLE_CONNECTION_NANOS) {
            backoffMs = MIN_BACKOFF_MS;
        }
        backOff();
    }

    private void close(boolean graceful) {
        if (out != null && graceful) {
            try {
                out.flush();
                sent += pendingLines;
                pendingLines = 0;
            } catch (IOException | RuntimeException ignored) {
                // counted as dropped just below
            }
        }
        localDropped += pendingLines; // zero after a successful flush
        pendingLines = 0;
        out = null;
        if (link != null) {
            try {
                link.close();
            } catch (IOException ignored) {
                // nothing useful to do
            }
        }
        link = null;
    }

    private static void closeQuietly(java.io.Closeable c) {
        if (c != null) {
            try {
                c.close();
            } catch (IOException ignored) {
                // nothing useful to do
            }
        }
    }
}
