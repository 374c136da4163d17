package io.sparkscope.listener;

import org.apache.spark.SparkContext;
import org.apache.spark.SparkContext$;
import org.apache.spark.SparkJobInfo;
import org.apache.spark.JobExecutionStatus;

/**
 * What the agent may ask of the driver. Each command runs against the active SparkContext only
 * (never {@code SparkContext.getOrCreate}, which could start a new one) and returns null when it
 * was carried out, or why not.
 */
final class Commands {
    private Commands() {
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
