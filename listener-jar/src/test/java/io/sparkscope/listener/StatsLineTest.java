package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

/** The health line: every loss in it, and written again only when something changed. */
class StatsLineTest {
    @Test
    void carriesEveryCountAndIsWrittenOnlyWhenSomethingChanged() {
        LineCounts counts = new LineCounts();
        AtomicLong queueDropped = new AtomicLong(4);
        EventRing ring = new EventRing(16);
        LiveState live = new LiveState(1);
        AtomicLong reaped = new AtomicLong(2);
        StatsLine stats = new StatsLine(counts, queueDropped, ring, live, new AtomicLong(5),
                reaped::get);
        counts.sent = 3;
        counts.pending = 2;
        counts.dropped = 1;
        counts.reconnects = 1;
        live.put(LiveState.Kind.JOB, "1", "j1");
        live.put(LiveState.Kind.JOB, "2", "j2");
        ring.offer("queued");

        String line = stats.next();
        assertNotNull(line);
        for (String part : new String[] {"\"Event\":\"SparkscopeListenerStats\"", "\"sent\":5,",
            "\"dropped\":5,", "\"queueSize\":1,", "\"reconnects\":1,", "\"liveEvicted\":1,",
            "\"untrackedTaskEvents\":5,", "\"jobsReaped\":2,", "\"busDropped\":{}"}) {
            assertTrue(line.contains(part), part + " in " + line);
        }
        assertNull(stats.next(), "nothing changed: no line");

        counts.data++;
        assertNotNull(stats.next(), "a line was written since");
        assertNull(stats.next());

        queueDropped.incrementAndGet();
        assertTrue(stats.next().contains("\"dropped\":6,"));
        assertEquals(6, stats.dropped());

        ring.poll();
        assertTrue(stats.next().contains("\"queueSize\":0,"));
        counts.reconnects++;
        assertTrue(stats.next().contains("\"reconnects\":2,"));
        reaped.incrementAndGet();
        assertTrue(stats.next().contains("\"jobsReaped\":3,"));
    }
}
