package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Ends zombie jobs: a job the live state holds as running that Spark reports not active in two
 * consecutive checks lost its JobEnd (Spark's listener bus drops events when its {@code shared}
 * queue overflows). It leaves the live state, and the agent is told in a
 * {@code SparkscopeJobsGone} line. One miss is never enough: a job whose JobEnd is on its way
 * is no longer active at Spark before it ends here. Sender thread only.
 */
final class JobReaper {
    static final int MAX_IDS_PER_LINE = 1000;
    private static final Logger LOG = LoggerFactory.getLogger(JobReaper.class);
    private static final int[] NONE = new int[0];

    private final ActiveJobs spark;
    private final LiveState live;
    /** Running here, not active at Spark in the last check; sorted. At most the live jobs. */
    private int[] suspects = NONE;
    private long reaped;
    private boolean failureLogged;

    JobReaper(ActiveJobs spark, LiveState live) {
        this.spark = spark;
        this.live = live;
    }

    /**
     * One check. Returns the ids of the jobs reaped now (sorted), already removed from the live
     * state with their stage attempts.
     */
    int[] check() {
        // The live jobs first: each was active at Spark before its JobStart was posted, so one
        // missing from the answer that follows has ended there.
        int[] running = live.jobIds();
        if (running.length == 0) {
            suspects = NONE;
            return NONE;
        }
        int[] active;
        try {
            active = spark.ids();
        } catch (RuntimeException | LinkageError e) {
            if (!failureLogged) {
                failureLogged = true;
                LOG.warn("sparkscope: cannot ask Spark which jobs are active (logged once); jobs "
                        + "whose end Spark's listener bus dropped stay live", e);
            }
            active = null;
        }
        if (active == null) {
            suspects = NONE; // a check that cannot tell breaks the run of two
            return NONE;
        }
        active = active.clone();
        Arrays.sort(active);
        int[] missing = new int[running.length];
        int[] gone = new int[running.length];
        int nMissing = 0;
        int nGone = 0;
        for (int id : running) {
            if (Arrays.binarySearch(active, id) >= 0) {
                continue;
            }
            if (Arrays.binarySearch(suspects, id) >= 0) {
                gone[nGone++] = id;
            } else {
                missing[nMissing++] = id;
            }
        }
        suspects = Arrays.copyOf(missing, nMissing);
        Arrays.sort(suspects);
        if (nGone == 0) {
            return NONE;
        }
        gone = Arrays.copyOf(gone, nGone);
        Arrays.sort(gone);
        for (int id : gone) {
            live.removeJob(Integer.toString(id));
        }
        reaped += nGone;
        String shown = nGone <= 10 ? Arrays.toString(gone)
                : Arrays.toString(Arrays.copyOf(gone, 10)) + "…";
        LOG.info("sparkscope: {} job(s) no longer active at Spark never ended here (their "
                + "JobEnd was dropped?), ended now: {}", nGone, shown);
        return gone;
    }

    /** Jobs reaped since the listener started. */
    long reaped() {
        return reaped;
    }

    /** The {@code SparkscopeJobsGone} lines for {@code ids}, at most 1000 ids each. */
    static List<String> lines(int[] ids, long time) {
        List<String> out = new ArrayList<>(ids.length / MAX_IDS_PER_LINE + 1);
        for (int from = 0; from < ids.length; from += MAX_IDS_PER_LINE) {
            int to = Math.min(ids.length, from + MAX_IDS_PER_LINE);
            StringBuilder list = new StringBuilder(8 * (to - from) + 2).append('[');
            for (int i = from; i < to; i++) {
                if (i > from) {
                    list.append(',');
                }
                list.append(ids[i]);
            }
            out.add(new Json("SparkscopeJobsGone").field("time", time)
                    .raw("jobIds", list.append(']').toString()).end());
        }
        return out;
    }
}
