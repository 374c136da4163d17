package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

/** Zombie jobs: gone at Spark in two consecutive checks, they leave the live state. */
class JobReaperTest {
    /** Spark's answer, set by the test; null: cannot tell. */
    private int[] active;
    private RuntimeException failure;

    private final ActiveJobs fake = () -> {
        if (failure != null) {
            throw failure;
        }
        return active;
    };

    @Test
    void aJobMissingAtSparkInTwoConsecutiveChecksIsReapedWithItsStages() {
        LiveState live = new LiveState(10);
        live.putJob("1", "job1", new int[] {0});
        live.putJob("2", "job2", new int[] {1});
        live.putJob("3", "job3", new int[] {2, 0});
        live.put(LiveState.Kind.STAGE, "0.0", "s0");
        live.put(LiveState.Kind.STAGE, "2.0", "s2");
        JobReaper reaper = new JobReaper(fake, live);

        active = new int[] {3, 2, 1, 42};
        assertArrayEquals(new int[0], reaper.check());
        active = new int[] {1};
        assertArrayEquals(new int[0], reaper.check(), "one miss is not enough");
        assertArrayEquals(new int[] {1, 2, 3}, live.jobIds());
        assertArrayEquals(new int[] {2, 3}, reaper.check());
        assertArrayEquals(new int[] {1}, live.jobIds());
        assertEquals(List.of("job1", "s0"), live.linesInOrder(),
                "stage 2 went with job 3; stage 0 stays for job 1");
        assertEquals(2, reaper.reaped());
        assertArrayEquals(new int[0], reaper.check(), "reaped once");
        assertEquals(2, reaper.reaped());
    }

    @Test
    void onlyConsecutiveMissesCountAndACheckThatCannotTellBreaksTheRun() {
        LiveState live = new LiveState(10);
        live.putJob("4", "job4", new int[0]);
        JobReaper reaper = new JobReaper(fake, live);
        int[] without = {};
        int[] with = {4};
        // Flapping (a racy read): never two misses in a row.
        for (int[] answer : new int[][] {without, with, without, with, without}) {
            active = answer;
            assertArrayEquals(new int[0], reaper.check());
        }
        active = null; // no SparkContext
        assertArrayEquals(new int[0], reaper.check());
        active = without;
        assertArrayEquals(new int[0], reaper.check(), "the unknown check broke the run");
        failure = new IllegalStateException("concurrent change");
        assertArrayEquals(new int[0], reaper.check());
        failure = null;
        assertArrayEquals(new int[0], reaper.check(), "so did the failed one");
        assertArrayEquals(new int[] {4}, reaper.check());
        assertEquals(0, live.size(LiveState.Kind.JOB));
    }

    @Test
    void aJobThatStartsBetweenChecksIsNotReaped() {
        LiveState live = new LiveState(10);
        JobReaper reaper = new JobReaper(fake, live);
        active = new int[0];
        assertArrayEquals(new int[0], reaper.check());
        live.putJob("9", "job9", new int[0]);
        active = new int[] {9};
        assertArrayEquals(new int[0], reaper.check());
        active = new int[0]; // its JobEnd is on its way
        assertArrayEquals(new int[0], reaper.check());
        live.removeJob("9"); // and arrives
        assertArrayEquals(new int[0], reaper.check());
        assertEquals(0, reaper.reaped());
    }

    @Test
    void theGoneLineCarriesAtMostAThousandIds() {
        int[] ids = new int[2500];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = i;
        }
        List<String> lines = JobReaper.lines(ids, 1795255538101L);
        assertEquals(3, lines.size());
        assertTrue(lines.get(0).startsWith(
                "{\"Event\":\"SparkscopeJobsGone\",\"time\":1795255538101,\"jobIds\":[0,1,2,"),
                lines.get(0));
        assertTrue(lines.get(0).endsWith(",999]}"), lines.get(0));
        assertTrue(lines.get(1).contains("\"jobIds\":[1000,") && lines.get(1).endsWith(",1999]}"));
        assertTrue(lines.get(2).contains("\"jobIds\":[2000,") && lines.get(2).endsWith(",2499]}"));
        assertEquals("{\"Event\":\"SparkscopeJobsGone\",\"time\":5,\"jobIds\":[7,9]}",
                JobReaper.lines(new int[] {7, 9}, 5).get(0));
        assertEquals(List.of(), JobReaper.lines(new int[0], 5));
    }

    @Test
    void withoutAnActiveSparkContextSparkCannotTell() {
        assertNull(new SparkActiveJobs().ids());
    }
}
