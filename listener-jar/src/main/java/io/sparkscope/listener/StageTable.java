package io.sparkscope.listener;

/**
 * Open-addressing map (stageId, attemptId) → counters, owned by the listener-bus thread. Boxed
 * keys would allocate on every task event; this map does not, and it grows only when a new stage
 * attempt is first seen.
 */
final class StageTable {
    private long[] keys = new long[64];
    private StageCounters[] vals = new StageCounters[64];
    private int size;

    private static long key(int stageId, int attemptId) {
        return ((long) stageId << 32) | (attemptId & 0xffffffffL);
    }

    private static int slot(long key, int mask) {
        long h = key * 0x9E3779B97F4A7C15L;
        return (int) (h ^ (h >>> 29)) & mask;
    }

    int size() {
        return size;
    }

    StageCounters get(int stageId, int attemptId) {
        long k = key(stageId, attemptId);
        int mask = vals.length - 1;
        for (int i = slot(k, mask); ; i = (i + 1) & mask) {
            StageCounters v = vals[i];
            if (v == null || keys[i] == k) {
                return v;
            }
        }
    }

    void put(StageCounters c) {
        if ((size + 1) * 2 > vals.length) {
            grow();
        }
        insert(key(c.stageId, c.attemptId), c);
        size++;
    }

    private void insert(long k, StageCounters c) {
        int mask = vals.length - 1;
        int i = slot(k, mask);
        while (vals[i] != null) {
            i = (i + 1) & mask;
        }
        keys[i] = k;
        vals[i] = c;
    }

    private void grow() {
        long[] oldKeys = keys;
        StageCounters[] oldVals = vals;
        keys = new long[oldKeys.length * 2];
        vals = new StageCounters[oldVals.length * 2];
        for (int i = 0; i < oldVals.length; i++) {
            if (oldVals[i] != null) {
                insert(oldKeys[i], oldVals[i]);
            }
        }
    }

    /** Removes {@code c} (backward-shift deletion keeps probe chains intact). */
    void remove(StageCounters c) {
        long k = key(c.stageId, c.attemptId);
        int mask = vals.length - 1;
        int i = slot(k, mask);
        while (vals[i] != null && keys[i] != k) {
            i = (i + 1) & mask;
        }
        if (vals[i] == null) {
            return;
        }
        vals[i] = null;
        size--;
        for (int j = (i + 1) & mask; vals[j] != null; j = (j + 1) & mask) {
            int home = slot(keys[j], mask);
            // Move j into the hole at i unless its home lies cyclically in (i, j].
            boolean stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) {
                keys[i] = keys[j];
                vals[i] = vals[j];
                vals[j] = null;
                i = j;
            }
        }
    }

    /** Some attempt that is already completed (but still waits for task ends), or null. */
    StageCounters anyCompleted(long[] scratch) {
        for (StageCounters v : vals) {
            if (v != null && v.snapshot(scratch) >= 0 && scratch[StageCounters.COMPLETED] != 0) {
                return v;
            }
        }
        return null;
    }
}
