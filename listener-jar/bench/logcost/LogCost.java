package io.sparkscope.listener;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;

/**
 * What forwarding costs the thread that logs: a WARN line through log4j2 with and without the
 * forwarder on Spark's root logger (Spark's own log4j2 configuration: a console appender), in
 * nanoseconds per line. Run by bench/measure_log_cost.sh.
 */
public final class LogCost {
    private LogCost() {}

    public static void main(String[] args) {
        int n = args.length > 0 ? Integer.parseInt(args[0]) : 200_000;
        Logger log = LogManager.getLogger("org.apache.spark.scheduler.TaskSetManager");
        long base = run(log, n);
        LogForwarder fwd = LogForwarder.install(1_000, Integer.MAX_VALUE);
        Thread drain = new Thread(() -> {
            while (!Thread.currentThread().isInterrupted()) {
                if (fwd.poll() == null) {
                    Thread.onSpinWait();
                }
            }
        });
        drain.setDaemon(true);
        drain.start();
        long with = run(log, n);
        drain.interrupt();
        LogForwarder limited = fwd;
        limited.uninstall();
        LogForwarder capped = LogForwarder.install(1_000, 50);
        long over = run(log, n);
        capped.uninstall();
        System.out.printf(
                "{\"lines\": %d, \"baseline_ns\": %.1f, \"forwarded_ns\": %.1f, "
                        + "\"over_rate_ns\": %.1f, \"forwarded_extra_ns\": %.1f}%n",
                n, base / (double) n, with / (double) n, over / (double) n,
                (with - base) / (double) n);
    }

    private static long run(Logger log, int n) {
        for (int i = 0; i < n / 4; i++) { // warm-up
            log.warn("Lost task {}.0 in stage 3.0 (TID {}): boom", i % 8, i);
        }
        long t0 = System.nanoTime();
        for (int i = 0; i < n; i++) {
            log.warn("Lost task {}.0 in stage 3.0 (TID {}): boom", i % 8, i);
        }
        return System.nanoTime() - t0;
    }
}
