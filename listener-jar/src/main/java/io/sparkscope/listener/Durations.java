package io.sparkscope.listener;

/**
 * A log-scale histogram of task durations (ms) small enough to keep per stage attempt and cheap
 * enough to update on the listener bus: 0–15 ms exactly, then four buckets per power of two, so a
 * bucket's lower bound is within 25% of any value in it. The agent uses the same buckets
 * (agent/src/model/durations.rs) for event logs.
 */
final class Durations {
    /** Enough for 2^40 ms (35 years); longer is counted in the last bucket. */
    static final int BUCKETS = 164;

    private Durations() {
    }

    static int bucket(long ms) {
        if (ms < 16) {
            return (int) Math.max(ms, 0);
        }
        int e = 63 - Long.numberOfLeadingZeros(ms);
        int sub = (int) ((ms >>> (e - 2)) & 3);
        return Math.min(16 + (e - 4) * 4 + sub, BUCKETS - 1);
    }

    /** The smallest value counted in bucket {@code b}. */
    static long lower(int b) {
        if (b < 16) {
            return b;
        }
        int e = (b - 16) / 4 + 4;
        int sub = (b - 16) % 4;
        return (long) (4 + sub) << (e - 2);
    }

    /**
     * The {@code q}-quantile (0..1) of the counted values: the middle of the bucket holding the
     * value of rank ceil(q·n), kept within [min, max]; -1 for an empty histogram.
     */
    static long quantile(int[] hist, double q, long min, long max) {
        long n = 0;
        for (int c : hist) {
            n += c;
        }
        if (n == 0) {
            return -1;
        }
        long rank = Math.max(1, (long) Math.ceil(q * n));
        long seen = 0;
        for (int b = 0; b < hist.length; b++) {
            seen += hist[b];
            if (seen >= rank) {
                long lo = lower(b);
                long hi = b + 1 < BUCKETS ? lower(b + 1) - 1 : lo;
                long mid = lo + (hi - lo) / 2;
                return Math.max(min, Math.min(max, mid));
            }
        }
        return max;
    }
}
