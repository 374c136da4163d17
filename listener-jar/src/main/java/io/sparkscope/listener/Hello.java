package io.sparkscope.listener;

import org.apache.spark.SparkConf;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The first line of every connection: which application and driver run this is, what Spark, and
 * where its UI answers, so the agent can attribute, tell a reconnect from a second driver, and
 * reconcile with Spark's REST API. Never the token (the handshake proves it instead).
 */
final class Hello {
    static final int PROTOCOL = 3;

    private static final Logger LOG = LoggerFactory.getLogger(Hello.class);

    private final SparkConf conf;
    private final long createdAt = System.currentTimeMillis();
    /** This run of the driver: reconnects carry it, so the agent tells them from a second driver. */
    final String runId = java.util.UUID.randomUUID().toString();
    /** Sender thread only: for a driver whose conf has no spark.app.id yet. */
    private String appIdFromEvent;

    Hello(SparkConf conf) {
        this.conf = conf;
    }

    /** The application id its ApplicationStart carried. */
    void applicationStarted(String appId) {
        appIdFromEvent = appId;
    }

    String appId() {
        return conf.get("spark.app.id", appIdFromEvent == null ? "" : appIdFromEvent);
    }

    String line(String appId, String nonce) {
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
}
