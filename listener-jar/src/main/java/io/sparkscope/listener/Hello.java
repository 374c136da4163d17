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
    /** Sender thread only: the UI address the current connection's hello carried. */
    private String uiUrlSent = "";

    /** The active SparkContext's UI address, or empty (tests give their own). */
    private final java.util.function.Supplier<String> activeUiUrl;

    Hello(SparkConf conf) {
        this(conf, Hello::activeContextUiUrl);
    }

    Hello(SparkConf conf, java.util.function.Supplier<String> activeUiUrl) {
        this.conf = conf;
        this.activeUiUrl = activeUiUrl;
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
                .field("uiUrl", uiUrlSent = uiUrl())
                .field("classicSession", conf.getBoolean(ListenerConfig.CLASSIC_SESSION, false))
                .end();
    }

    /**
     * The {@code SparkscopeUiUrl} line for an address Spark's UI got after this connection's
     * hello was sent without one (the hello can go out while the SparkContext is still being
     * built, before it is the active one); null when there is nothing new to say. Once per
     * connection: the address is then the one sent.
     */
    String lateUiUrlLine(long time) {
        if (!uiUrlSent.isEmpty()) {
            return null;
        }
        String now = uiUrl();
        if (now.isEmpty()) {
            return null;
        }
        uiUrlSent = now;
        return new Json("SparkscopeUiUrl").field("time", time).field("uiUrl", now).end();
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
        return activeUiUrl.get();
    }

    private static String activeContextUiUrl() {
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
