package io.sparkscope.listener;

import java.io.IOException;
import java.lang.reflect.Constructor;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.util.JsonProtocol;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What of an event may leave the driver, and how it is written: Spark's own event-log JSON, of a
 * copy whose job properties hold only the kept keys, and of SQL and Connect events only their
 * kept fields (docs/wire-protocol.md § What leaves the driver). Sender thread only.
 */
final class EventFilter {
    private static final Logger LOG = LoggerFactory.getLogger(EventFilter.class);

    /** The only JobStart / StageSubmitted properties that leave the driver (protocol § Events). */
    static final String[] KEPT_PROPERTIES = {
        "spark.job.tags", "spark.job.description", "callSite.short", "spark.sql.execution.id",
        "spark.sql.execution.root.id", "spark.jobGroup.id", "spark.scheduler.pool",
    };

    /** SQL and Connect events are known here only by class name: the jar links against core. */
    static final String SQL_UI = "org.apache.spark.sql.execution.ui.";
    static final String CONNECT = "org.apache.spark.sql.connect.service.SparkListenerConnect";

    /**
     * The SQL and Connect events that leave the driver; any other event that is not Spark's own
     * (a streaming query's, a third-party library's) never does, whatever it carries
     * (docs/wire-protocol.md § Events).
     */
    static final Set<String> FORWARDED_OTHER_EVENTS = Set.of(
            SQL_UI + "SparkListenerSQLExecutionStart",
            SQL_UI + "SparkListenerSQLExecutionEnd",
            SQL_UI + "SparkListenerSQLAdaptiveExecutionUpdate",
            CONNECT + "ServiceStarted", CONNECT + "ServiceEnd",
            CONNECT + "SessionStarted", CONNECT + "SessionClosed",
            CONNECT + "OperationStarted", CONNECT + "OperationAnalyzed",
            CONNECT + "OperationReadyForExecution", CONNECT + "OperationFinished",
            CONNECT + "OperationFailed", CONNECT + "OperationCanceled",
            CONNECT + "OperationClosed");

    /** Spark's own events that leave the driver, besides the task events behind progress. */
    static final Set<String> FORWARDED_CORE_EVENTS = Set.of(
            "org.apache.spark.scheduler.SparkListenerApplicationStart",
            "org.apache.spark.scheduler.SparkListenerApplicationEnd",
            "org.apache.spark.scheduler.SparkListenerExecutorAdded",
            "org.apache.spark.scheduler.SparkListenerExecutorRemoved",
            "org.apache.spark.scheduler.SparkListenerJobStart",
            "org.apache.spark.scheduler.SparkListenerJobEnd",
            "org.apache.spark.scheduler.SparkListenerStageSubmitted",
            "org.apache.spark.scheduler.SparkListenerStageCompleted",
            "org.apache.spark.scheduler.SparkListenerTaskStart",
            "org.apache.spark.scheduler.SparkListenerTaskEnd");

    /** Whether an event of this class may leave the driver at all. */
    static boolean forwarded(String className) {
        return FORWARDED_CORE_EVENTS.contains(className)
                || FORWARDED_OTHER_EVENTS.contains(className);
    }
    /** The plan tree's field in SQL events; its nodes keep only {@link #PLAN_NODE_FIELDS}. */
    static final String PLAN = "sparkPlanInfo";
    /** Free text (a statement, an error) is cut to this many characters before it leaves. */
    static final int MAX_TEXT = 4096;
    /**
     * The only fields of these events that leave the driver: SQL events lose the session's
     * modified confs and the plan's text and metadata (its tree is kept, see {@link #plan}),
     * Connect events their free-form extra tags.
     */
    static final Map<String, Set<String>> KEPT_FIELDS = Map.of(
            SQL_UI + "SparkListenerSQLExecutionStart",
            Set.of("Event", "executionId", "rootExecutionId", "description", "time", "jobTags",
                    "jobGroupId", "queryId", PLAN),
            SQL_UI + "SparkListenerSQLExecutionEnd",
            Set.of("Event", "executionId", "time", "errorMessage", "queryId"),
            SQL_UI + "SparkListenerSQLAdaptiveExecutionUpdate",
            Set.of("Event", "executionId", PLAN));
    static final Set<String> PLAN_NODE_FIELDS =
            Set.of("nodeName", "simpleString", "children", "metrics");
    static final Set<String> PLAN_METRIC_FIELDS = Set.of("name", "accumulatorId", "metricType");
    /** A plan node's name and one-line description are cut to these many characters. */
    static final int MAX_NODE_NAME = 100;
    static final int MAX_NODE_TEXT = 300;
    /**
     * Deeper plan nodes are dropped (and counted): no plan makes the sender recurse further,
     * and the agent reads JSON nested up to 128 levels (a node and its children list are two).
     */
    static final int MAX_PLAN_DEPTH = 50;
    /** Added to an SQL event whose plan lost nodes to the bounds. */
    static final String NODES_DROPPED = "sparkscopeNodesDropped";
    static final Set<String> CONNECT_DROPPED_FIELDS = Set.of("extraTags");

    private final ObjectMapper mapper = new ObjectMapper();
    private final int maxPlanNodes;
    /** The accumulator ids of the plan last trimmed (its operators' SQL metrics). */
    private long[] planAccumulators = new long[0];
    /** Failures are logged once per event class: a driver must not log per event. */
    private final Map<String, Boolean> failureLogged = new HashMap<>();
    private Constructor<?> jobStartCtor;

    EventFilter() {
        this(1_000);
    }

    EventFilter(int maxPlanNodes) {
        this.maxPlanNodes = maxPlanNodes;
    }

    /**
     * The accumulator ids of the SQL metrics in the plan of the SQL event last serialized, or
     * none when it had no plan; read right after {@link #serialize}.
     */
    long[] planAccumulators() {
        return planAccumulators;
    }

    /**
     * The event as one line, or null when it may not leave the driver or cannot be serialized
     * (then it is dropped).
     */
    String serialize(SparkListenerEvent e) {
        if (!forwarded(e.getClass().getName())) {
            if (failureLogged.put("not forwarded " + e.getClass().getName(), Boolean.TRUE) == null) {
                LOG.warn("sparkscope: {} is not an event that leaves the driver (dropped)",
                        e.getClass().getName());
            }
            return null;
        }
        Throwable failure = null;
        // Spark mutates StageInfo & co. on its own threads; a second try usually succeeds.
        for (int attempt = 0; attempt < 2; attempt++) {
            try {
                return trim(e.getClass().getName(), JsonProtocol.sparkEventToJsonString(e));
            } catch (Throwable t) {
                failure = t;
            }
        }
        if (failureLogged.put(e.getClass().getName(), Boolean.TRUE) == null) {
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
    String trim(String className, String json) throws IOException {
        Set<String> kept = KEPT_FIELDS.get(className);
        boolean connect = className.startsWith(CONNECT);
        if (kept == null && !connect) {
            return json;
        }
        ObjectNode node = (ObjectNode) mapper.readTree(json);
        planAccumulators = new long[0];
        Iterator<Map.Entry<String, JsonNode>> fields = node.properties().iterator();
        int[] dropped = {0};
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> f = fields.next();
            if (kept != null ? !kept.contains(f.getKey()) : CONNECT_DROPPED_FIELDS.contains(f.getKey())) {
                fields.remove();
            } else if (kept != null && f.getKey().equals(PLAN)) {
                List<Long> ids = new ArrayList<>();
                int[] budget = {maxPlanNodes};
                f.setValue(plan(f.getValue(), 0, budget, dropped, ids));
                planAccumulators = ids.stream().mapToLong(Long::longValue).toArray();
            } else if (f.getValue().isTextual() && f.getValue().asText().length() > MAX_TEXT) {
                f.setValue(node.textNode(f.getValue().asText().substring(0, MAX_TEXT) + "…"));
            }
        }
        if (dropped[0] > 0) {
            node.put(NODES_DROPPED, dropped[0]);
        }
        return mapper.writeValueAsString(node);
    }

    /**
     * A plan node as it may leave the driver: its name, its one-line description (Spark's
     * {@code simpleString}, whose data-source options Spark has already redacted), cut short,
     * and its SQL metrics' names, types and accumulator ids; never its metadata (file
     * locations, options). At most {@code budget} nodes, pre-order; the rest are counted in
     * {@code dropped}.
     */
    private JsonNode plan(JsonNode in, int depth, int[] budget, int[] dropped, List<Long> ids) {
        ObjectNode out = mapper.createObjectNode();
        budget[0]--;
        out.put("nodeName", cut(in.path("nodeName").asText(""), MAX_NODE_NAME));
        out.put("simpleString", cut(in.path("simpleString").asText(""), MAX_NODE_TEXT));
        ArrayNode metrics = out.putArray("metrics");
        for (JsonNode m : in.path("metrics")) {
            if (m.path("accumulatorId").canConvertToLong()) {
                ObjectNode metric = metrics.addObject();
                metric.put("name", cut(m.path("name").asText(""), MAX_NODE_NAME));
                metric.put("accumulatorId", m.path("accumulatorId").asLong());
                metric.put("metricType", cut(m.path("metricType").asText(""), MAX_NODE_NAME));
                ids.add(m.path("accumulatorId").asLong());
            }
        }
        ArrayNode children = out.putArray("children");
        for (JsonNode c : in.path("children")) {
            if (budget[0] <= 0 || depth + 1 >= MAX_PLAN_DEPTH) {
                dropped[0] += count(c);
                continue;
            }
            children.add(plan(c, depth + 1, budget, dropped, ids));
        }
        return out;
    }

    /** The nodes of a subtree, without recursion (a dropped subtree may be deep). */
    private static int count(JsonNode root) {
        int n = 0;
        ArrayDeque<JsonNode> todo = new ArrayDeque<>();
        todo.push(root);
        while (!todo.isEmpty()) {
            JsonNode node = todo.pop();
            n++;
            for (JsonNode c : node.path("children")) {
                todo.push(c);
            }
        }
        return n;
    }

    private static String cut(String s, int max) {
        return s.length() > max ? s.substring(0, max) + "…" : s;
    }

    /** Only the {@link #KEPT_PROPERTIES} of a job's or stage's properties. */
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

    /** A copy of the StageSubmitted with filtered properties: Spark's event is never mutated. */
    static SparkListenerStageSubmitted stageSubmitted(SparkListenerStageSubmitted s) {
        return new SparkListenerStageSubmitted(s.stageInfo(), filter(s.properties()));
    }

    /**
     * A copy of the JobStart with filtered properties, or null when none can be made (the
     * original must then not be sent). Built reflectively so the jar does not link against
     * {@code stageInfos()}, whose Scala Seq type differs between Spark 3.5 and 4.x.
     */
    SparkListenerEvent jobStart(SparkListenerJobStart j) {
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
            if (failureLogged.put("JobStart copy", Boolean.TRUE) == null) {
                LOG.warn("sparkscope: cannot copy SparkListenerJobStart; job starts are dropped", t);
            }
            return null;
        }
    }
}
