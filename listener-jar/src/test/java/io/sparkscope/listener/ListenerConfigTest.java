package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class ListenerConfigTest {
    private static long jobCheck(String value) {
        SparkConf conf = new SparkConf(false);
        if (value != null) {
            conf.set(ListenerConfig.JOB_CHECK_INTERVAL_MS, value);
        }
        return ListenerConfig.from(conf).jobCheckIntervalMs;
    }

    @Test
    void theJobCheckIntervalIsOffOrWithinBoundsElseTheDefault() {
        assertEquals(5_000, jobCheck(null));
        assertEquals(0, jobCheck("0"));
        assertEquals(250, jobCheck(" 250 "));
        assertEquals(100, jobCheck("100"));
        assertEquals(3_600_000, jobCheck("3600000"));
        for (String bad : new String[] {"99", "-1", "3600001", "5s", "", "1e3"}) {
            assertEquals(5_000, jobCheck(bad), bad);
        }
    }
}
