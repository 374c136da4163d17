package io.sparkscope.listener;

import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.UnaryOperator;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.Property;
import org.apache.spark.SparkContext;
import org.apache.spark.SparkContext$;
import org.apache.spark.TaskContext;
import scala.Option;

/**
 * The driver's WARN and ERROR lines, for the agent: a log4j2 appender on the root logger that
 * turns each line into a small record and offers it to a bounded queue, which the sender thread
 * drains (docs/wire-protocol.md, {@code SparkscopeLogLine}).
 *
 * <p>It runs on whatever thread logs, so it never blocks and never logs: a line over the rate
 * ({@code spark.sparkscope.logs.maxPerSecond}) or over the queue's bound is dropped and counted.
 * Whose line it is travels with it, for the agent to show each user only their own: the job
 * tags of the thread's Spark local properties (a task's, or a Connect operation's thread), and
 * Spark's structured-logging context (session_id, user_id, stage_id, job_id, …).
 */
final class LogForwarder extends AbstractAppender {
    static final String NAME = "sparkscope-log-forwarder";
    static final int MAX_MESSAGE = 2_000;
    static final int MAX_THROWN = 4_000;
    static final int MAX_FRAMES = 8;
    static final int MAX_CONTEXT = 16;
    static final int MAX_VALUE = 200;
    private static final String JOB_TAGS = "spark.job.tags";

    /** One forwarded line, as the appender caught it. */
    static final class Line {
        final long timeMs;
        final String level;
        final String logger;
        final String thread;
        final String message;
        final String thrown;
        final String jobTags;
        final Map<String, String> context;

        Line(long timeMs, String level, String logger, String thread, String message,
                String thrown, String jobTags, Map<String, String> context) {
            this.timeMs = timeMs;
            this.level = level;
            this.logger = logger;
            this.thread = thread;
            this.message = message;
            this.thrown = thrown;
            this.jobTags = jobTags;
            this.context = context;
        }

        /** The line on the wire. */
        String json() {
            Json ctx = new Json();
            for (Map.Entry<String, String> e : context.entrySet()) {
                ctx.field(e.getKey(), e.getValue());
            }
            return new Json("SparkscopeLogLine")
                    .field("Timestamp", timeMs)
                    .field("Level", level)
                    .field("Logger", logger)
                    .field("Thread", thread)
                    .field("Message", message)
                    .field("Thrown", thrown)
                    .field("Job Tags", jobTags)
                    .raw("Context", ctx.end())
                    .end();
        }
    }

    private final ArrayBlockingQueue<Line> queue;
    private final int maxPerSecond;
    private final AtomicLong dropped = new AtomicLong();
    private final AtomicLong forwarded = new AtomicLong();
    // The current second and the lines taken in it: a race between two loggers at a second's
    // turn lets a few more through, never fewer.
    private volatile long second;
    private final AtomicLong inSecond = new AtomicLong();
    // Bound by the sender thread once Spark's context is active; lines before carry no tags.
    private volatile UnaryOperator<String> localProperty;

    LogForwarder(int capacity, int maxPerSecond) {
        super(NAME, null, null, true, Property.EMPTY_ARRAY);
        this.queue = new ArrayBlockingQueue<>(capacity);
        this.maxPerSecond = maxPerSecond;
    }

    /**
     * Adds a forwarder for WARN and above to the root logger of log4j2's current configuration
     * (the loggers' own levels are left alone). Null when log4j2 is not Spark's backend.
     */
    static LogForwarder install(int capacity, int maxPerSecond) {
        Object context = sparkLogContext();
        if (!(context instanceof LoggerContext)) {
            return null;
        }
        LoggerContext ctx = (LoggerContext) context;
        Configuration config = ctx.getConfiguration();
        LogForwarder forwarder = new LogForwarder(capacity, maxPerSecond);
        forwarder.start();
        config.addAppender(forwarder);
        config.getRootLogger().addAppender(forwarder, Level.WARN, null);
        ctx.updateLoggers();
        return forwarder;
    }

    /** Takes the forwarder off the root logger (at application end). */
    void uninstall() {
        Object context = sparkLogContext();
        if (context instanceof LoggerContext) {
            LoggerContext ctx = (LoggerContext) context;
            ctx.getConfiguration().getRootLogger().removeAppender(NAME);
            ctx.updateLoggers();
        }
        stop();
    }

    /**
     * Spark's own logger context. This jar comes through {@code --jars}, in a class loader of its
     * own, for which log4j2's default context selector would make a context no logger of
     * Spark's writes to.
     */
    private static Object sparkLogContext() {
        return LogManager.getContext(SparkContext.class.getClassLoader(), false);
    }

    @Override
    public void append(LogEvent event) {
        try {
            if (!event.getLevel().isMoreSpecificThan(Level.WARN)) {
                return;
            }
            String logger = event.getLoggerName();
            if (logger != null && logger.startsWith("io.sparkscope.")) {
                return; // our own lines (the agent being away) would only feed themselves
            }
            long now = event.getTimeMillis();
            long sec = now / 1000;
            if (sec != second) {
                second = sec;
                inSecond.set(0);
            }
            if (inSecond.incrementAndGet() > maxPerSecond) {
                dropped.incrementAndGet();
                return;
            }
            Line line = new Line(now, event.getLevel().name(), cut(logger, MAX_VALUE),
                    cut(event.getThreadName(), MAX_VALUE),
                    cut(event.getMessage() == null ? "" : event.getMessage().getFormattedMessage(),
                            MAX_MESSAGE),
                    thrown(event.getThrown()), jobTags(), context(event));
            if (queue.offer(line)) {
                forwarded.incrementAndGet();
            } else {
                dropped.incrementAndGet();
            }
        } catch (Throwable t) {
            dropped.incrementAndGet(); // a logging call must never fail because of us
        }
    }

    /** The next line for the sender thread, or null. */
    Line poll() {
        return queue.poll();
    }

    long dropped() {
        return dropped.get();
    }

    long forwarded() {
        return forwarded.get();
    }

    /**
     * Binds the application's SparkContext once it is active; called from the sender thread.
     * The logging threads then read its local properties through this reference: asking
     * {@code SparkContext.getActive()} there would take Spark's context-constructor lock on
     * whatever thread logs, and wait while a context is being built.
     */
    void bindIfUnbound() {
        if (localProperty == null) {
            Option<SparkContext> active = SparkContext$.MODULE$.getActive();
            if (active.isDefined()) {
                bind(active.get()::getLocalProperty);
            }
        }
    }

    /** The calling thread's Spark local properties (a SparkContext's, or a test's). */
    void bind(UnaryOperator<String> properties) {
        localProperty = properties;
    }

    /** The job tags of the logging thread: its task's, else its own local properties'. */
    private String jobTags() {
        TaskContext task = TaskContext.get();
        if (task != null) {
            return cut(task.getLocalProperty(JOB_TAGS), MAX_MESSAGE);
        }
        UnaryOperator<String> properties = localProperty;
        if (properties != null) {
            return cut(properties.apply(JOB_TAGS), MAX_MESSAGE);
        }
        return "";
    }

    private static Map<String, String> context(LogEvent event) {
        Map<String, String> data = event.getContextData().toMap();
        if (data.isEmpty()) {
            return Map.of();
        }
        java.util.TreeMap<String, String> kept = new java.util.TreeMap<>();
        for (Map.Entry<String, String> e : data.entrySet()) {
            if (kept.size() >= MAX_CONTEXT) {
                break;
            }
            kept.put(cut(e.getKey(), MAX_VALUE), cut(e.getValue(), MAX_VALUE));
        }
        return kept;
    }

    /** The exception's class and message, and its first frames. */
    static String thrown(Throwable t) {
        if (t == null) {
            return "";
        }
        StringBuilder sb = new StringBuilder(256).append(t);
        StackTraceElement[] frames = t.getStackTrace();
        for (int i = 0; i < Math.min(MAX_FRAMES, frames.length); i++) {
            sb.append("\n\tat ").append(frames[i]);
        }
        if (frames.length > MAX_FRAMES) {
            sb.append("\n\t... ").append(frames.length - MAX_FRAMES).append(" more");
        }
        return cut(sb.toString(), MAX_THROWN);
    }

    static String cut(String s, int max) {
        if (s == null) {
            return "";
        }
        return s.length() <= max ? s : s.substring(0, max - 1) + "…";
    }
}
