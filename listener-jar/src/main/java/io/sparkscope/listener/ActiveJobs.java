package io.sparkscope.listener;

/**
 * Which jobs Spark is really running, asked on the sender thread to find jobs whose JobEnd the
 * listener bus dropped ({@link JobReaper}). An interface so tests can stand in for Spark.
 */
interface ActiveJobs {
    /** The ids of the jobs Spark runs now, in any order, or null when it cannot tell. */
    int[] ids();
}
