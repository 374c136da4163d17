package sparkscope.test;

import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.SparkListenerTaskStart;

/**
 * A listener that takes its time over every task event. Sharing Spark's `shared` listener-bus
 * queue with the sparkscope listener, and with that queue made tiny, it makes Spark drop events
 * there: the tests' way of losing events the way a busy driver does.
 */
public class SlowListener extends SparkListener {
    private static void pause() {
        try {
            Thread.sleep(3);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void onTaskStart(SparkListenerTaskStart taskStart) {
        pause();
    }

    @Override
    public void onTaskEnd(SparkListenerTaskEnd taskEnd) {
        pause();
    }
}
