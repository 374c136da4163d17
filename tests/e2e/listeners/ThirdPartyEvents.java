package sparkscope.test;

import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.spark.SparkContext;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerEvent;
import org.apache.spark.scheduler.SparkListenerJobStart;

/**
 * A third party's listener, as a library on the driver might bring: at the first job it posts
 * an event of its own to Spark's listener bus, carrying a value that looks like a secret (the
 * `secret` of the driver's `spark.sparkscope.test.thirdPartySecret`). Spark's event log records
 * it; the sparkscope listener must not forward it.
 */
public class ThirdPartyEvents extends SparkListener {
    /** The third party's event; Spark's event log writes it with Jackson, getters included. */
    public static class SecretEvent implements SparkListenerEvent {
        private final String secret;

        public SecretEvent(String secret) {
            this.secret = secret;
        }

        public String getSecret() {
            return secret;
        }
    }

    private final AtomicBoolean posted = new AtomicBoolean();

    @Override
    public void onJobStart(SparkListenerJobStart jobStart) {
        if (posted.getAndSet(true)) {
            return;
        }
        SparkContext sc = SparkContext.getOrCreate(); // the running one
        String secret = sc.getConf().get("spark.sparkscope.test.thirdPartySecret", "");
        sc.listenerBus().post(new SecretEvent(secret));
    }
}
