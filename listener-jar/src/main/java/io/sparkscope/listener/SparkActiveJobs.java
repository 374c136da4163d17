package io.sparkscope.listener;

import java.util.Arrays;

import org.apache.spark.SparkContext;
import org.apache.spark.SparkContext$;
import org.apache.spark.scheduler.ActiveJob;
import org.apache.spark.scheduler.DAGScheduler;

/**
 * The active SparkContext's DAG scheduler's active jobs: the authority on what runs, unlike the
 * status tracker, which is built from listener events and misses what the bus dropped.
 * {@code dagScheduler()} and {@code activeJobs()} are package-private in Scala and public in
 * bytecode. Never creates a SparkContext.
 */
final class SparkActiveJobs implements ActiveJobs {
    @Override
    public int[] ids() {
        scala.Option<SparkContext> active = SparkContext$.MODULE$.getActive();
        if (active.isEmpty() || active.get().isStopped()) {
            return null;
        }
        DAGScheduler dag = active.get().dagScheduler();
        if (dag == null) {
            return null;
        }
        // The set belongs to the scheduler's event loop; read from here a concurrent job start
        // or end can make the read fail or miss an id. A failure is "cannot tell", and the
        // reaper acts only on two consecutive checks, seconds apart.
        int[] ids = new int[16];
        int n = 0;
        scala.collection.Iterator<ActiveJob> it = dag.activeJobs().iterator();
        while (it.hasNext()) {
            if (n == ids.length) {
                ids = Arrays.copyOf(ids, n * 2);
            }
            ids[n++] = it.next().jobId();
        }
        return Arrays.copyOf(ids, n);
    }
}
