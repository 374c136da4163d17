package io.sparkscope.listener;

import java.net.InetSocketAddress;

import org.apache.spark.SparkConf;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The listener's settings, read once from the Spark conf. A bad value falls back to its default
 * with a warning: a typo in a monitoring setting must never stop the Spark application.
 */
final class ListenerConfig {
    static final String AGENT = "spark.sparkscope.agent";
    static final String TOKEN = "spark.sparkscope.token";
    static final String TOKEN_FILE = "spark.sparkscope.tokenFile";
    static final String TOKEN_ENV = "SPARKSCOPE_LISTENER_TOKEN";
    static final String FLUSH_INTERVAL_MS = "spark.sparkscope.flushIntervalMs";
    static final String QUEUE_CAPACITY = "spark.sparkscope.queueCapacity";
    static final String MAX_LIVE_ENTITIES = "spark.sparkscope.maxLiveEntities";
    static final String WRITE_TIMEOUT_MS = "spark.sparkscope.writeTimeoutMs";
    static final String UI_URL = "spark.sparkscope.uiUrl";
    static final String JOB_CHECK_INTERVAL_MS = "spark.sparkscope.jobCheckIntervalMs";
    static final long DEFAULT_JOB_CHECK_INTERVAL_MS = 5_000;
    static final long MIN_JOB_CHECK_INTERVAL_MS = 100;
    static final long MAX_JOB_CHECK_INTERVAL_MS = 3_600_000;
    /** Set by the kernel extension on a notebook's own (classic) SparkContext. */
    static final String CLASSIC_SESSION = "spark.sparkscope.classicSession";
    static final String TLS_TRUST = "spark.sparkscope.tls.trustCert";
    /** The driver's WARN and ERROR lines forwarded per second at most; 0 (the default) none. */
    static final String LOGS_MAX_PER_SECOND = "spark.sparkscope.logs.maxPerSecond";
    static final long DEFAULT_LOGS_MAX_PER_SECOND = 50;
    static final String LOGS_QUEUE_CAPACITY = "spark.sparkscope.logs.queueCapacity";
    /** Plan nodes sent per SQL execution (and per adaptive re-plan) at most. */
    static final String PLAN_MAX_NODES = "spark.sparkscope.plan.maxNodes";

    static final String DEFAULT_AGENT = "127.0.0.1:4741";

    private static final Logger LOG = LoggerFactory.getLogger(ListenerConfig.class);

    final String agentHost;
    final int agentPort;
    final String token;
    /**
     * Why the listener must not connect at all, or null: a token file was named and cannot be
     * read (falling back to another source, or to none, would be a surprise).
     */
    final String unusable;
    final long flushIntervalMs;
    final int queueCapacity;
    final int maxLiveEntities;
    final long writeTimeoutMs;
    /** How often Spark is asked which jobs are active (zombie jobs, {@link JobReaper}); 0: never. */
    final long jobCheckIntervalMs;
    /** A PEM file of the agent's certificate (or its CA): TLS to the agent when set. */
    final String tlsTrust;
    /** The driver's WARN and ERROR lines forwarded per second at most; 0: none. */
    final int logsMaxPerSecond;
    /** Lines waiting for the sender (and for the agent, while it is away) at most. */
    final int logsQueueCapacity;
    /** Plan nodes sent per SQL execution at most; the rest are counted, not sent. */
    final int planMaxNodes;

    private ListenerConfig(String agentHost, int agentPort, String token, String unusable,
            long flushIntervalMs, int queueCapacity, int maxLiveEntities, long writeTimeoutMs,
            long jobCheckIntervalMs, String tlsTrust, int logsMaxPerSecond,
            int logsQueueCapacity, int planMaxNodes) {
        this.agentHost = agentHost;
        this.agentPort = agentPort;
        this.token = token;
        this.unusable = unusable;
        this.flushIntervalMs = flushIntervalMs;
        this.queueCapacity = queueCapacity;
        this.maxLiveEntities = maxLiveEntities;
        this.writeTimeoutMs = writeTimeoutMs;
        this.jobCheckIntervalMs = jobCheckIntervalMs;
        this.tlsTrust = tlsTrust;
        this.logsMaxPerSecond = logsMaxPerSecond;
        this.logsQueueCapacity = logsQueueCapacity;
        this.planMaxNodes = planMaxNodes;
    }

    static ListenerConfig from(SparkConf conf) {
        String agent = conf.get(AGENT, DEFAULT_AGENT).trim();
        String host;
        int port;
        try {
            int colon = agent.lastIndexOf(':');
            host = agent.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1); // [::1]:4741
            }
            port = Integer.parseInt(agent.substring(colon + 1));
            if (host.isEmpty() || port <= 0 || port > 65535) {
                throw new IllegalArgumentException(agent);
            }
        } catch (RuntimeException e) {
            LOG.warn("sparkscope: {}={} is not host:port, using {}", AGENT, agent, DEFAULT_AGENT);
            host = "127.0.0.1";
            port = 4741;
        }
        String token;
        String unusable = null;
        try {
            token = token(conf);
        } catch (java.io.IOException e) {
            token = "";
            unusable = e.getMessage();
        }
        return new ListenerConfig(host, port, token, unusable,
                positive(conf, FLUSH_INTERVAL_MS, 100),
                (int) positive(conf, QUEUE_CAPACITY, 10_000),
                (int) positive(conf, MAX_LIVE_ENTITIES, 10_000),
                positive(conf, WRITE_TIMEOUT_MS, 10_000),
                interval(conf, JOB_CHECK_INTERVAL_MS, DEFAULT_JOB_CHECK_INTERVAL_MS,
                        MIN_JOB_CHECK_INTERVAL_MS, MAX_JOB_CHECK_INTERVAL_MS),
                conf.get(TLS_TRUST, "").trim(),
                (int) interval(conf, LOGS_MAX_PER_SECOND, DEFAULT_LOGS_MAX_PER_SECOND, 1, 10_000),
                (int) positive(conf, LOGS_QUEUE_CAPACITY, 1_000),
                (int) positive(conf, PLAN_MAX_NODES, 1_000));
    }

    /**
     * The token, from the first of: the file named by {@code spark.sparkscope.tokenFile}, the
     * driver's environment variable {@code SPARKSCOPE_LISTENER_TOKEN}, the conf
     * {@code spark.sparkscope.token}. A conf given on the command line is visible to every local
     * user in the process list, so it is taken with a warning. A token file that is named but
     * cannot be read (or is empty) is an error: no other source is tried.
     */
    static String token(SparkConf conf) throws java.io.IOException {
        String file = conf.get(TOKEN_FILE, "").trim();
        if (!file.isEmpty()) {
            String t;
            try {
                t = java.nio.file.Files.readString(java.nio.file.Path.of(file)).trim();
            } catch (java.io.IOException | RuntimeException e) {
                throw new java.io.IOException(String.format(
                        "cannot read %s (%s): %s", TOKEN_FILE, file, e), e);
            }
            if (t.isEmpty()) {
                throw new java.io.IOException(String.format("%s (%s) is empty", TOKEN_FILE, file));
            }
            return t;
        }
        String env = System.getenv(TOKEN_ENV);
        if (env != null && !env.trim().isEmpty()) {
            return env.trim();
        }
        String plain = conf.get(TOKEN, "").trim();
        if (!plain.isEmpty()) {
            LOG.warn("sparkscope: the token comes from {}, which a command line shows to every "
                    + "local user; prefer the environment variable {} or {}", TOKEN, TOKEN_ENV,
                    TOKEN_FILE);
        }
        return plain;
    }

    InetSocketAddress agentAddress() {
        return new InetSocketAddress(agentHost, agentPort);
    }

    String agentString() {
        return agentHost + ":" + agentPort;
    }

    /** Milliseconds between {@code min} and {@code max}, or 0 for off. */
    private static long interval(SparkConf conf, String key, long dflt, long min, long max) {
        String raw = conf.get(key, null);
        if (raw == null) {
            return dflt;
        }
        try {
            long v = Long.parseLong(raw.trim());
            if (v == 0 || (v >= min && v <= max)) {
                return v;
            }
        } catch (NumberFormatException ignored) {
            // fall through to the warning
        }
        LOG.warn("sparkscope: {}={} is neither 0 (off) nor a number of milliseconds from {} to {}, "
                + "using {}", key, raw, min, max, dflt);
        return dflt;
    }

    private static long positive(SparkConf conf, String key, long dflt) {
        String raw = conf.get(key, null);
        if (raw == null) {
            return dflt;
        }
        try {
            long v = Long.parseLong(raw.trim());
            if (v > 0 && v <= Integer.MAX_VALUE) {
                return v;
            }
        } catch (NumberFormatException ignored) {
            // fall through to the warning
        }
        LOG.warn("sparkscope: {}={} is not a positive integer, using {}", key, raw, dflt);
        return dflt;
    }
}
