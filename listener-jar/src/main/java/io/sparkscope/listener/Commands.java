package io.sparkscope.listener;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.spark.SparkContext;
import org.apache.spark.SparkContext$;
import org.apache.spark.SparkJobInfo;
import org.apache.spark.JobExecutionStatus;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the agent may ask of the driver, and the answer it gets. Each command runs against the
 * active SparkContext only (never {@code SparkContext.getOrCreate}, which could start a new one)
 * and returns null when it was carried out, or why not.
 */
final class Commands {
    private static final Logger LOG = LoggerFactory.getLogger(Commands.class);
    private static final ObjectMapper MAPPER = new ObjectMapper();

    private Commands() {
    }

    /**
     * The answer to a command from an agent that could not prove itself (the listener has no
     * token): refused, never carried out.
     */
    static String refuse(String line) {
        String id = "";
        try {
            JsonNode node = MAPPER.readTree(line);
            id = node == null ? "" : node.path("id").asText("");
        } catch (Exception ignored) {
            // an id is all that is read; without one the answer goes to no request
        }
        LOG.warn("sparkscope: refused a command: this listener has no token, so the agent is "
                + "not proven");
        return answer(id, "the listener has no token: it takes no commands");
    }

    /**
     * A command line from the agent (cancelJob, cancelJobsWithTag), carried out; returns its
     * {@code SparkscopeCommandResult} line. Runs on the sender thread: SparkContext.cancelJob only
     * posts to the DAG scheduler's event loop.
     */
    static String run(String line) {
        String id = "";
        String error;
        try {
            JsonNode node = MAPPER.readTree(line);
            String cmd = node == null ? "" : node.path("cmd").asText("");
            id = node == null ? "" : node.path("id").asText("");
            if ("cancelJob".equals(cmd) && node.path("jobId").canConvertToInt()) {
                int jobId = node.path("jobId").asInt();
                String reason = node.path("reason").asText("cancelled through sparkscope");
                error = cancelJob(jobId, reason);
                if (error == null) {
                    LOG.info("sparkscope: cancelled job {} at the agent's request ({})", jobId,
                            reason);
                }
            } else if ("cancelJobsWithTag".equals(cmd) && !node.path("tag").asText("").isEmpty()) {
                String tag = node.path("tag").asText();
                String reason = node.path("reason").asText("cancelled through sparkscope");
                error = cancelJobsWithTag(tag, reason);
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
        return answer(id, error);
    }

    /** The {@code SparkscopeCommandResult} line: ok when {@code error} is null. */
    private static String answer(String id, String error) {
        Json answer = new Json("SparkscopeCommandResult").field("id", id).field("ok", error == null);
        if (error != null) {
            answer.field("error", error);
        }
        return answer.end();
    }

    static String cancelJob(int jobId, String reason) {
        scala.Option<SparkContext> active = SparkContext$.MODULE$.getActive();
        if (active.isEmpty()) {
            return "no active SparkContext";
        }
        SparkContext sc = active.get();
        scala.Option<SparkJobInfo> info = sc.statusTracker().getJobInfo(jobId);
        if (info.isEmpty()) {
            return "Spark does not know job " + jobId;
        }
        JobExecutionStatus status = info.get().status();
        if (status != JobExecutionStatus.RUNNING) {
            return "job " + jobId + " is not running (" + status + ")";
        }
        sc.cancelJob(jobId, reason);
        return null;
    }

    /**
     * Every job carrying {@code tag} (SparkContext.addJobTag: a notebook cell run on a classic
     * session), running or about to run. Spark 4 records the reason; Spark 3.5 has the method
     * without one (looked up at run time, so this jar loads in both).
     */
    static String cancelJobsWithTag(String tag, String reason) {
        scala.Option<SparkContext> active = SparkContext$.MODULE$.getActive();
        if (active.isEmpty()) {
            return "no active SparkContext";
        }
        SparkContext sc = active.get();
        try {
            SparkContext.class.getMethod("cancelJobsWithTag", String.class, String.class)
                    .invoke(sc, tag, reason);
        } catch (NoSuchMethodException e) {
            sc.cancelJobsWithTag(tag);
        } catch (ReflectiveOperationException e) {
            return e.toString();
        }
        return null;
    }
}
