package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

/** SQL metrics go out coalesced: changed values only, set ones only, again after a snapshot. */
class SqlMetricsTest {
    private final Map<Long, Long> values = new HashMap<>();
    private final SqlMetrics metrics =
            new SqlMetrics(id -> values.getOrDefault(id, Long.MIN_VALUE));

    @Test
    void onlyChangedAndSetValuesAreSent() {
        values.put(1L, 10L);
        values.put(2L, -1L); // a size metric no task has updated yet
        metrics.track(7, new long[] {1, 2, 3}); // 3: no such accumulator
        assertEquals("{\"Event\":\"SparkscopeSqlMetrics\",\"time\":5,\"executionId\":7,"
                + "\"values\":[[1,10]]}", metrics.line(7, 5));
        assertNull(metrics.line(7, 6), "nothing changed");
        values.put(2L, 4096L);
        values.put(3L, 1L); // gone once: never asked for again
        assertEquals("{\"Event\":\"SparkscopeSqlMetrics\",\"time\":7,\"executionId\":7,"
                + "\"values\":[[2,4096]]}", metrics.line(7, 7));
        metrics.resendAll();
        assertEquals("{\"Event\":\"SparkscopeSqlMetrics\",\"time\":8,\"executionId\":7,"
                + "\"values\":[[1,10],[2,4096]]}", metrics.line(7, 8));
    }

    @Test
    void aReplanKeepsWhatWasSentForTheIdsItKeeps() {
        values.put(1L, 10L);
        values.put(4L, 3L);
        metrics.track(7, new long[] {1});
        metrics.line(7, 1);
        metrics.track(7, new long[] {1, 4});
        assertEquals("{\"Event\":\"SparkscopeSqlMetrics\",\"time\":2,\"executionId\":7,"
                + "\"values\":[[4,3]]}", metrics.line(7, 2));
    }

    @Test
    void followedExecutionsAreBounded() {
        for (long i = 0; i < SqlMetrics.MAX_EXECUTIONS + 3; i++) {
            metrics.track(i, new long[] {1});
        }
        assertEquals(SqlMetrics.MAX_EXECUTIONS, metrics.size());
        assertEquals(3, metrics.evicted);
        values.put(1L, 1L);
        assertNull(metrics.line(0, 1), "the oldest was let go");
    }
}
