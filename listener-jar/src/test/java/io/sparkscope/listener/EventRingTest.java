package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class EventRingTest {
    @Test
    void aFullRingRefusesWithoutBlockingAndKeepsOrder() {
        EventRing ring = new EventRing(3);
        assertTrue(ring.offer("a"));
        assertTrue(ring.offer("b"));
        assertTrue(ring.offer("c"));
        assertFalse(ring.offer("d"), "the fourth offer into a ring of three is refused");
        assertEquals(3, ring.size());
        assertEquals("a", ring.poll());
        assertTrue(ring.offer("e"), "a slot freed by the consumer is used again");
        assertEquals("b", ring.poll());
        assertEquals("c", ring.poll());
        assertEquals("e", ring.poll());
        assertNull(ring.poll());
        assertEquals(0, ring.size());
    }

    @Test
    void producerAndConsumerOnTwoThreadsLoseNothingThatWasAccepted() throws Exception {
        EventRing ring = new EventRing(64);
        int n = 200_000;
        long[] accepted = new long[1];
        Thread producer = new Thread(() -> {
            for (int i = 0; i < n; i++) {
                if (ring.offer(i)) {
                    accepted[0]++;
                }
            }
        });
        producer.start();
        long seen = 0;
        int last = -1;
        while (producer.isAlive() || ring.size() > 0) {
            Object o = ring.poll();
            if (o != null) {
                int v = (Integer) o;
                assertTrue(v > last, "in order");
                last = v;
                seen++;
            }
        }
        producer.join();
        Object o;
        while ((o = ring.poll()) != null) {
            seen++;
            last = (Integer) o;
        }
        assertEquals(accepted[0], seen);
    }
}
