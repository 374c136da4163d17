package io.sparkscope.listener;

import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import org.apache.spark.SparkConf;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The sender thread's loop: keeps the agent connected, drains the events queued on Spark's
 * listener-bus thread, and every flush interval sends progress and stats. Nothing here runs on
 * the bus thread; each of those jobs is a class of its own.
 */
final class Sender implements Runnable {
    private static final Logger LOG = LoggerFactory.getLogger(Sender.class);

    private final ListenerConfig config;
    private final EventRing ring;
    private final Thread thread;
    private final long flushNanos;
    private final long pollNanos;
    private final long jobCheckNanos;

    private volatile boolean stopping;

    // Everything below belongs to the sender thread.
    private final LineCounts counts = new LineCounts();
    private final Connector agent;
    private final Progress progress;
    private final LiveEvents events;
    private final StatsLine stats;
    private final JobReaper reaper; // null when spark.sparkscope.jobCheckIntervalMs is 0
    private final Hello hello;
    private volatile LogForwarder logs; // null: the driver's log lines are not forwarded

    Sender(ListenerConfig config, SparkConf conf, EventRing ring,
            ConcurrentLinkedQueue<StageCounters> newStages, AtomicLong queueDropped,
            AtomicLong untrackedTaskEvents, AtomicLong countersEvicted) {
        this(config, conf, ring, newStages, queueDropped, untrackedTaskEvents, countersEvicted,
                new SparkActiveJobs());
    }

    /** The same, asking {@code activeJobs} which jobs Spark really runs. */
    Sender(ListenerConfig config, SparkConf conf, EventRing ring,
            ConcurrentLinkedQueue<StageCounters> newStages, AtomicLong queueDropped,
            AtomicLong untrackedTaskEvents, AtomicLong countersEvicted, ActiveJobs activeJobs) {
        this.config = config;
        this.ring = ring;
        LiveState live = new LiveState(config.maxLiveEntities);
        this.hello = new Hello(conf);
        this.agent = new Connector(config, hello, counts);
        // TLS asked for and not to be had: the thread drains and counts, and never connects.
        this.stopping = !agent.usable();
        this.progress = new Progress(newStages, live, agent);
        this.events = new LiveEvents(live, new EventFilter(config.planMaxNodes), progress, agent, counts,
                hello, ExecutorPeaks.of(conf, config.maxLiveEntities));
        this.reaper = config.jobCheckIntervalMs > 0 ? new JobReaper(activeJobs, live) : null;
        this.stats = new StatsLine(counts, queueDropped, ring, live, untrackedTaskEvents,
                countersEvicted, reaper == null ? () -> 0L : reaper::reaped);
        this.jobCheckNanos = TimeUnit.MILLISECONDS.toNanos(config.jobCheckIntervalMs);
        this.flushNanos = TimeUnit.MILLISECONDS.toNanos(config.flushIntervalMs);
        // Drain the ring ten times per flush interval, so bursts do not fill it and job and stage
        // changes pass on quickly: a notebook's progress view waits on them.
        this.pollNanos = Math.max(1_000_000L, Math.min(flushNanos / 10, 10_000_000L));
        this.thread = new Thread(this, "sparkscope-sender");
        this.thread.setDaemon(true);
    }

    /** Forwards the driver's WARN and ERROR lines this forwarder catches; before start(). */
    void forwardLogs(LogForwarder forwarder) {
        this.logs = forwarder;
        stats.logs(forwarder);
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
            agent.close(true);
        }
    }

    private void loop() {
        long nextFlush = System.nanoTime() + flushNanos;
        long nextJobCheck = System.nanoTime() + jobCheckNanos;
        while (true) {
            // Read before draining, so everything offered before stop() is still sent.
            boolean last = stopping;
            long now = System.nanoTime();
            if (!last && agent.due(now) && agent.connect()) {
                events.snapshot();
            }
            // Commands (job cancel) are read every poll, not once per flush interval. Without a
            // token the agent proved nothing, so nothing it asks is carried out.
            for (String command : agent.poll()) {
                agent.write(config.token.isEmpty() ? Commands.refuse(command)
                        : Commands.run(command));
                agent.flush();
            }
            // Adopt new stages before draining: their StageSubmitted is then already in the ring.
            progress.adoptNewStages();
            Object e;
            boolean drained = false;
            while ((e = ring.poll()) != null) {
                events.handle((SparkListenerEvent) e);
                drained = true;
            }
            // The driver's log lines wait in their own bounded queue while the agent is away.
            LogForwarder forwarder = logs;
            if (forwarder != null) {
                forwarder.bindIfUnbound();
            }
            if (forwarder != null && agent.connected()) {
                LogForwarder.Line line;
                while ((line = forwarder.poll()) != null) {
                    agent.writeLine(line.json());
                    drained = true;
                }
            }
            now = System.nanoTime();
            // After the drain, so a JobEnd that was already queued ends its job first.
            if (reaper != null && !last && now - nextJobCheck >= 0) {
                reapJobs();
                nextJobCheck = now + jobCheckNanos;
            }
            if (last || now - nextFlush >= 0) {
                tick(now);
                nextFlush = now + flushNanos;
            } else if (agent.connected() && stats.heartbeatDue(now)) {
                // Before the first stats line, or with a flush interval over 10 s: the
                // heartbeat keeps its own pace.
                writeStats(now);
                agent.flush();
            } else if (drained) {
                // Job, stage and operation changes go out within one poll, not one flush
                // interval: that is what a notebook's progress view waits for. Task counts
                // still travel coalesced, once per interval.
                agent.flush();
            }
            if (last) {
                LOG.info("sparkscope: listener stopped ({} lines sent, {} dropped)", counts.sent,
                        stats.dropped());
                return;
            }
            LockSupport.parkNanos(Math.max(0, Math.min(pollNanos, nextFlush - now)));
        }
    }

    /**
     * Jobs Spark no longer runs that never ended here leave the live state; a connected agent
     * is told at once, one that is away learns it from the next snapshot, which lacks them.
     */
    private void reapJobs() {
        int[] gone = reaper.check();
        if (gone.length == 0 || !agent.connected()) {
            return;
        }
        for (String line : JobReaper.lines(gone, System.currentTimeMillis())) {
            agent.writeLine(line);
        }
        agent.flush();
    }

    /**
     * Once per flush interval: the UI's address if it came after the hello, progress lines, a
     * stats line if anything changed or the last is
     * 10 s old, flush.
     */
    private void tick(long now) {
        if (agent.connected()) {
            String late = hello.lateUiUrlLine(System.currentTimeMillis());
            if (late != null) {
                agent.write(late);
            }
        }
        progress.write();
        events.writeSqlMetrics();
        writeStats(now);
        agent.flush();
    }

    private void writeStats(long now) {
        if (agent.connected()) { // else nobody to tell; the next connection gets a fresh line
            String line = stats.next(now);
            if (line != null) {
                agent.write(line);
            }
        }
    }
}
