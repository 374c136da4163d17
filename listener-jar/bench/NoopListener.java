package io.sparkscope.bench;

import org.apache.spark.scheduler.SparkListener;

/**
 * Baseline for measure_cost.sh: a listener that does nothing. Its listenerProcessingTime is the
 * floor of Spark's own per-event timing (two nanoTime calls, dispatch, cold caches after the bus
 * thread wakes up), which SparkscopeListener's figures should be read against.
 */
public class NoopListener extends SparkListener {
}
