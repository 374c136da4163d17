package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

/** The health line: every loss in it, written again when something changed or 10 s passed. */
class StatsLineTest {
    @Test
    void carriesEveryCountAndIsWrittenWhenSomethingChanged() {
        LineCounts counts = new LineCounts();
        AtomicLong queueDropped = new AtomicLong(4);
        EventRing ring = new EventRing(16);
        LiveState live = new LiveState(1);
        AtomicLong reaped = new AtomicLong(2);
        StatsLine stats = new StatsLine(counts, queueDropped, ring, live, new AtomicLong(5),
                new AtomicLong(3), reaped::get);
        counts.sent = 3;
        counts.pending = 2;
        counts.dropped = 1;
        counts.reconnects = 1;
        live.put(LiveState.Kind.JOB, "1", "j1");
        live.put(LiveState.Kind.JOB, "2", "j2");
        ring.offer("queued");

        long t = 1_000L;
        String line = stats.next(t);
        assertNotNull(line);
        for (String part : new String[] {"\"Event\":\"SparkscopeListenerStats\"", "\"sent\":5,",
            "\"dropped\":5,", "\"queueSize\":1,", "\"reconnects\":1,", "\"liveEvicted\":4,",
            "\"untrackedTaskEvents\":5,", "\"jobsReaped\":2,", "\"busDropped\":{}"}) {
            assertTrue(line.contains(part), part + " in " + line);
        }
        assertNull(stats.next(t), "nothing changed: no line");

        counts.data++;
        assertNotNull(stats.next(t), "a line was written since");
        assertNull(stats.next(t));

        queueDropped.incrementAndGet();
        assertTrue(stats.next(t).contains("\"dropped\":6,"));
        assertEquals(6, stats.dropped());

        ring.poll();
        assertTrue(stats.next(t).contains("\"queueSize\":0,"));
        counts.reconnects++;
        assertTrue(stats.next(t).contains("\"reconnects\":2,"));
        reaped.incrementAndGet();
        assertTrue(stats.next(t).contains("\"jobsReaped\":3,"));
    }

    @Test
    void aQuietListenerStillSendsALineEveryTenSeconds() {
        LineCounts counts = new LineCounts();
        StatsLine stats = new StatsLine(counts, new AtomicLong(), new EventRing(16),
                new LiveState(1), new AtomicLong(), new AtomicLong(), () -> 0L);
        long t = 123_456_789L;
        assertTrue(stats.heartbeatDue(t), "nothing written yet");
        assertNotNull(stats.next(t));
        assertFalse(stats.heartbeatDue(t + StatsLine.HEARTBEAT_NANOS - 1));
        assertNull(stats.next(t + StatsLine.HEARTBEAT_NANOS - 1), "quiet, and not yet 10 s");
        t += StatsLine.HEARTBEAT_NANOS;
        assertTrue(stats.heartbeatDue(t));
        String beat = stats.next(t);
        assertNotNull(beat, "10 s without a line: a heartbeat, though nothing changed");
        assertTrue(beat.contains("\"Event\":\"SparkscopeListenerStats\""), beat);
        assertNull(stats.next(t + 1));
        counts.data++;
        t += StatsLine.HEARTBEAT_NANOS / 2;
        assertNotNull(stats.next(t), "a change goes out at once");
        assertNull(stats.next(t + StatsLine.HEARTBEAT_NANOS - 1), "and restarts the 10 s");
        assertNotNull(stats.next(t + StatsLine.HEARTBEAT_NANOS));
    }
}
