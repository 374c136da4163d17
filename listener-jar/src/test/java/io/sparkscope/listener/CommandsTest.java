package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Every command line is answered, and none is carried out without an active SparkContext. */
class CommandsTest {
    private static final String RESULT = "{\"Event\":\"SparkscopeCommandResult\",";

    @Test
    void cancelsNeedTheActiveSparkContextAndNeverStartOne() {
        assertEquals(RESULT + "\"id\":\"c1\",\"ok\":false,\"error\":\"no active SparkContext\"}",
                Commands.run("{\"cmd\":\"cancelJob\",\"id\":\"c1\",\"jobId\":7}"));
        assertEquals(RESULT + "\"id\":\"c2\",\"ok\":false,\"error\":\"no active SparkContext\"}",
                Commands.run("{\"cmd\":\"cancelJobsWithTag\",\"id\":\"c2\",\"tag\":\"cell-1\"}"));
    }

    @Test
    void unknownIncompleteAndMalformedCommandsAreAnsweredNotThrown() {
        assertEquals(RESULT + "\"id\":\"c3\",\"ok\":false,\"error\":\"unknown command\"}",
                Commands.run("{\"cmd\":\"dropTable\",\"id\":\"c3\"}"));
        assertEquals(RESULT + "\"id\":\"c4\",\"ok\":false,\"error\":\"unknown command\"}",
                Commands.run("{\"cmd\":\"cancelJob\",\"id\":\"c4\",\"jobId\":\"seven\"}"));
        assertEquals(RESULT + "\"id\":\"c5\",\"ok\":false,\"error\":\"unknown command\"}",
                Commands.run("{\"cmd\":\"cancelJobsWithTag\",\"id\":\"c5\",\"tag\":\"\"}"));
        String answer = Commands.run("{not json");
        assertTrue(answer.startsWith(RESULT + "\"id\":\"\",\"ok\":false,\"error\":\""), answer);
    }
}
