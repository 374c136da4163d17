package io.sparkscope.listener;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Bounded single-producer single-consumer queue between the listener-bus thread (producer) and
 * the sender thread (consumer). Lock-free and allocation-free: a full ring rejects the offer and
 * the caller counts the drop, so Spark's bus never waits for us.
 */
final class EventRing {
    private static final VarHandle HEAD;
    private static final VarHandle TAIL;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            HEAD = l.findVarHandle(EventRing.class, "head", long.class);
            TAIL = l.findVarHandle(EventRing.class, "tail", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final Object[] slots;
    private final int mask;
    private final int capacity;

    // Written only by the consumer; read by the producer when its cached copy says "full".
    @SuppressWarnings("unused")
    private long head;
    // Written only by the producer.
    @SuppressWarnings("unused")
    private long tail;
    // Producer-private copy of head, so a non-full offer touches no consumer-written field.
    private long cachedHead;

    EventRing(int capacity) {
        int size = Integer.highestOneBit(Math.max(2, capacity - 1)) << 1;
        this.slots = new Object[size];
        this.mask = size - 1;
        this.capacity = capacity;
    }

    /** Producer only. Returns false when the ring holds {@code capacity} items. */
    boolean offer(Object item) {
        long t = (long) TAIL.get(this);
        if (t - cachedHead >= capacity) {
            cachedHead = (long) HEAD.getAcquire(this);
            if (t - cachedHead >= capacity) {
                return false;
            }
        }
        slots[(int) t & mask] = item;
        TAIL.setRelease(this, t + 1);
        return true;
    }

    /** Consumer only. Returns null when empty. */
    Object poll() {
        long h = (long) HEAD.get(this);
        if (h == (long) TAIL.getAcquire(this)) {
            return null;
        }
        int i = (int) h & mask;
        Object item = slots[i];
        slots[i] = null;
        HEAD.setRelease(this, h + 1);
        return item;
    }

    /** Approximate size, for stats. */
    int size() {
        long n = (long) TAIL.getOpaque(this) - (long) HEAD.getOpaque(this);
        return (int) Math.max(0, Math.min(n, capacity));
    }
}
