package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.executor.TaskMetrics;
import org.apache.spark.scheduler.SparkListenerJobStart;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.StageInfo;
import org.junit.jupiter.api.Test;

/** What leaves the driver: kept properties and fields only, free text cut, Spark's event intact. */
class EventFilterTest {
    private final EventFilter filter = new EventFilter();
    private final ObjectMapper mapper = new ObjectMapper();

    @SuppressWarnings("unchecked")
    private static <T> scala.collection.immutable.Seq<T> seq(List<T> items) {
        return (scala.collection.immutable.Seq<T>) scala.jdk.javaapi.CollectionConverters
                .asScala(items).toList();
    }

    private static Properties secretAndTags() {
        Properties p = new Properties();
        p.setProperty("spark.job.tags", "t1");
        p.setProperty("callSite.short", "collect at <stdin>:1");
        p.setProperty("spark.sql.warehouse.dir", "/secret");
        p.setProperty("spark.sparkscope.token", "hunter2");
        return p;
    }

    private List<String> fieldNames(String json) throws Exception {
        List<String> names = new ArrayList<>();
        mapper.readTree(json).fieldNames().forEachRemaining(names::add);
        return names;
    }

    @Test
    void onlyTheKeptPropertiesLeave() {
        Properties kept = EventFilter.filter(secretAndTags());
        assertEquals(2, kept.size(), kept.toString());
        assertEquals("t1", kept.getProperty("spark.job.tags"));
        assertEquals("collect at <stdin>:1", kept.getProperty("callSite.short"));
        assertNull(EventFilter.filter(null));
    }

    @Test
    void jobAndStageStartsAreSentAsFilteredCopiesAndSparksEventsStayIntact() {
        StageInfo info = new StageInfo(0, 0, "stage 0", 1, seq(List.of()), seq(List.of()), "",
                TaskMetrics.empty(), seq(List.of()), scala.Option.empty(), 0, false, 0);
        Properties props = secretAndTags();
        SparkListenerJobStart job = new SparkListenerJobStart(7, 1L, seq(List.of(info)), props);
        SparkListenerStageSubmitted stage = new SparkListenerStageSubmitted(info, props);

        for (String line : List.of(filter.serialize(filter.jobStart(job)),
                filter.serialize(EventFilter.stageSubmitted(stage)))) {
            assertTrue(line.contains("\"spark.job.tags\":\"t1\""), line);
            assertFalse(line.contains("/secret") || line.contains("hunter2"), line);
        }
        assertTrue(filter.serialize(filter.jobStart(job)).contains("\"Job ID\":7"));
        assertEquals("/secret", job.properties().getProperty("spark.sql.warehouse.dir"));
        assertEquals("hunter2", stage.properties().getProperty("spark.sparkscope.token"));
    }

    @Test
    void sqlEventsKeepOnlyTheirListedFieldsAndCutFreeText() throws Exception {
        String start = EventFilter.SQL_UI + "SparkListenerSQLExecutionStart";
        String json = "{\"Event\":\"" + start + "\",\"executionId\":3,\"rootExecutionId\":3,"
                + "\"description\":\"" + "s".repeat(5000) + "\",\"details\":\"at x\","
                + "\"physicalPlanDescription\":\"== Plan ==\","
                + "\"sparkPlanInfo\":{\"nodeName\":\"Scan\"},"
                + "\"time\":1,\"modifiedConfigs\":{\"spark.password\":\"pw\"},\"jobTags\":[],"
                + "\"jobGroupId\":null,\"queryId\":\"q\"}";
        String out = filter.trim(start, json);
        assertEquals(List.of("Event", "executionId", "rootExecutionId", "description",
                "sparkPlanInfo", "time", "jobTags", "jobGroupId", "queryId"), fieldNames(out));
        String description = mapper.readTree(out).path("description").asText();
        assertEquals("s".repeat(EventFilter.MAX_TEXT) + "…", description);

        String end = EventFilter.SQL_UI + "SparkListenerSQLExecutionEnd";
        String endJson = "{\"Event\":\"" + end + "\",\"executionId\":3,\"time\":2,"
                + "\"errorMessage\":\"boom\",\"qe\":{},\"queryId\":\"q\"}";
        assertEquals(List.of("Event", "executionId", "time", "errorMessage", "queryId"),
                fieldNames(filter.trim(end, endJson)));
    }

    @Test
    void plansKeepTheTreeAndMetricsButNoMetadataAndStayBounded() throws Exception {
        String start = EventFilter.SQL_UI + "SparkListenerSQLExecutionStart";
        String scan = "{\"nodeName\":\"Scan parquet\",\"simpleString\":\"" + "x".repeat(400)
                + "\",\"children\":[],\"metadata\":{\"Location\":\"s3://bucket/secret\","
                + "\"Options\":\"password=pw\"},\"metrics\":[{\"name\":\"number of output rows\","
                + "\"accumulatorId\":11,\"metricType\":\"sum\"}]}";
        String json = "{\"Event\":\"" + start + "\",\"executionId\":3,\"time\":1,"
                + "\"sparkPlanInfo\":{\"nodeName\":\"HashAggregate\",\"simpleString\":\"agg\","
                + "\"metadata\":{},\"metrics\":[{\"name\":\"spill size\",\"accumulatorId\":12,"
                + "\"metricType\":\"size\"}],\"children\":[" + scan + "," + scan + "]}}";
        String out = new EventFilter(2).trim(start, json);
        assertFalse(out.contains("secret") || out.contains("password"), out);
        JsonNode plan = mapper.readTree(out).path("sparkPlanInfo");
        assertEquals(List.of("nodeName", "simpleString", "metrics", "children"),
                fieldNames(mapper.writeValueAsString(plan)));
        assertEquals(1, plan.path("children").size(), "bounded to two nodes");
        assertEquals(1, mapper.readTree(out).path(EventFilter.NODES_DROPPED).asInt());
        JsonNode child = plan.path("children").get(0);
        assertEquals("x".repeat(EventFilter.MAX_NODE_TEXT) + "…", child.path("simpleString").asText());
        assertEquals(11, child.path("metrics").get(0).path("accumulatorId").asLong());

        EventFilter f = new EventFilter(2);
        f.trim(start, json);
        assertArrayEquals(new long[] {12, 11}, f.planAccumulators());

        String update = EventFilter.SQL_UI + "SparkListenerSQLAdaptiveExecutionUpdate";
        String updateJson = "{\"Event\":\"" + update + "\",\"executionId\":3,"
                + "\"physicalPlanDescription\":\"== Plan ==\",\"sparkPlanInfo\":" + scan + "}";
        assertEquals(List.of("Event", "executionId", "sparkPlanInfo"),
                fieldNames(filter.trim(update, updateJson)));
        assertTrue(EventFilter.forwarded(update));
    }

    @Test
    void aDeepPlanIsCutAtTheDepthBoundWithoutRecursingFurther() throws Exception {
        String start = EventFilter.SQL_UI + "SparkListenerSQLExecutionStart";
        StringBuilder plan = new StringBuilder();
        int depth = 300; // Jackson reads at most 1,000 levels of nesting
        for (int i = 0; i < depth; i++) {
            plan.append("{\"nodeName\":\"Project\",\"children\":[");
        }
        plan.append("{\"nodeName\":\"Leaf\"}");
        for (int i = 0; i < depth; i++) {
            plan.append("]}");
        }
        String json = "{\"Event\":\"" + start + "\",\"executionId\":3,\"sparkPlanInfo\":"
                + plan + "}";
        JsonNode out = mapper.readTree(new EventFilter(10_000).trim(start, json));
        assertEquals(depth + 1 - EventFilter.MAX_PLAN_DEPTH, out.path(EventFilter.NODES_DROPPED).asInt());
    }

    @Test
    void connectEventsLoseTheirExtraTagsAndKeepTheRest() throws Exception {
        String started = EventFilter.CONNECT + "OperationStarted";
        String json = "{\"Event\":\"" + started + "\",\"jobTag\":\"tag\",\"operationId\":\"op\","
                + "\"statementText\":\"" + "p".repeat(5000) + "\",\"extraTags\":{\"k\":\"v\"},"
                + "\"eventTime\":5}";
        String out = filter.trim(started, json);
        assertEquals(List.of("Event", "jobTag", "operationId", "statementText", "eventTime"),
                fieldNames(out));
        JsonNode node = mapper.readTree(out);
        assertEquals(EventFilter.MAX_TEXT + 1, node.path("statementText").asText().length());
        assertEquals(5, node.path("eventTime").asInt());
    }

    @Test
    void otherEventsAreSentAsSparkWroteThem() throws Exception {
        String json = "{\"Event\":\"SparkListenerJobEnd\",\"Job ID\":7,\"x\":\"" + "y".repeat(5000)
                + "\"}";
        assertSame(json, filter.trim("org.apache.spark.scheduler.SparkListenerJobEnd", json));
    }

    /** An event of someone else's, as a streaming query's or a library's would be. */
    static final class ThirdPartyEvent implements org.apache.spark.scheduler.SparkListenerEvent {
        public String getPassword() {
            return "hunter2";
        }

        @Override
        public boolean logEvent() {
            return true;
        }
    }

    @Test
    void onlyTheEventsTheAgentUsesLeaveTheDriver() {
        assertNull(filter.serialize(new ThirdPartyEvent()), "a third-party event never leaves");
        assertFalse(EventFilter.forwarded(
                "org.apache.spark.sql.streaming.StreamingQueryListener$QueryProgressEvent"));
        assertFalse(EventFilter.forwarded(
                "org.apache.spark.scheduler.SparkListenerEnvironmentUpdate"));
        assertTrue(EventFilter.forwarded(
                EventFilter.CONNECT + "OperationStarted"));
        assertTrue(EventFilter.forwarded("org.apache.spark.scheduler.SparkListenerJobStart"));
    }
}
