package io.sparkscope.listener;

import java.util.Map;
import java.util.TreeMap;

import com.codahale.metrics.Counter;
import org.apache.spark.SparkEnv;
import org.apache.spark.metrics.source.Source;

/**
 * Spark's own listener-bus drop counters ({@code queue.<name>.numDroppedEvents} of the
 * {@code LiveListenerBus} metrics source), read on the sender thread for the stats line. A drop
 * in the {@code shared} queue means this listener missed events; one in {@code appStatus} means
 * Spark's own REST API did. The agent reconciles when either grows.
 */
final class BusDrops {
    private static final String PREFIX = "queue.";
    private static final String SUFFIX = ".numDroppedEvents";

    private Map<String, Counter> counters;

    /** {@code {"shared":0,"appStatus":0,…}}, or {@code {}} before Spark's bus has started. */
    String read() {
        if (counters == null) {
            counters = find();
        }
        Json out = new Json();
        if (counters != null) {
            for (Map.Entry<String, Counter> e : counters.entrySet()) {
                out.field(e.getKey(), e.getValue().getCount());
            }
        }
        return out.end();
    }

    /**
     * Looked up by name through reflection: {@code MetricsSystem.getSourcesByName} returns a Scala
     * Seq whose type differs between Spark 3.5 and 4.x. Null until the source is registered.
     */
    private static Map<String, Counter> find() {
        try {
            SparkEnv env = SparkEnv.get();
            if (env == null) {
                return null;
            }
            Object metricsSystem = env.metricsSystem();
            Object sources = metricsSystem.getClass()
                    .getMethod("getSourcesByName", String.class)
                    .invoke(metricsSystem, "LiveListenerBus");
            scala.collection.Iterator<?> it = ((scala.collection.Iterable<?>) sources).iterator();
            Map<String, Counter> found = new TreeMap<>();
            while (it.hasNext()) {
                Source src = (Source) it.next();
                for (Map.Entry<String, Counter> e : src.metricRegistry().getCounters().entrySet()) {
                    String name = e.getKey();
                    if (name.startsWith(PREFIX) && name.endsWith(SUFFIX)) {
                        found.put(name.substring(PREFIX.length(), name.length() - SUFFIX.length()),
                                e.getValue());
                    }
                }
            }
            return found.isEmpty() ? null : found;
        } catch (ReflectiveOperationException | RuntimeException | LinkageError e) {
            return null;
        }
    }
}
