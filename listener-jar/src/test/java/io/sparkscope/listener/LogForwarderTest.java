package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import org.apache.logging.log4j.CloseableThreadContext;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The driver's log lines for the agent: WARN and above only, with whose they are (Spark's
 * structured-logging context), bounded in size, rate and queue, and never our own lines.
 */
class LogForwarderTest {
    private LogForwarder forwarder;

    @AfterEach
    void uninstall() {
        if (forwarder != null) {
            forwarder.uninstall();
        }
    }

    private List<LogForwarder.Line> drain() {
        List<LogForwarder.Line> lines = new ArrayList<>();
        LogForwarder.Line line;
        while ((line = forwarder.poll()) != null) {
            lines.add(line);
        }
        return lines;
    }

    @Test
    void forwardsWarnAndAboveWithTheirContext() {
        forwarder = LogForwarder.install(100, 1_000);
        assertNotNull(forwarder, "log4j2 is the backend of Spark's classpath");
        Logger log = LogManager.getLogger("org.apache.spark.scheduler.TaskSetManager");
        log.info("not forwarded");
        CloseableThreadContext.Instance ctx = CloseableThreadContext
                .put("session_id", "11111111-1111-4111-8111-111111111111")
                .put("stage_id", "3.0");
        try {
            log.warn("Lost task 0.0 in stage 3.0 (TID 7)");
        } finally {
            ctx.close();
        }
        log.error("Task 0 in stage 3.0 failed 1 times; aborting job",
                new ArithmeticException("[DIVIDE_BY_ZERO] Division by zero"));
        LogManager.getLogger("io.sparkscope.listener.Connector").warn("agent away");

        List<LogForwarder.Line> lines = drain();
        assertEquals(2, lines.size(), lines.toString());
        LogForwarder.Line warn = lines.get(0);
        assertEquals("WARN", warn.level);
        assertEquals("3.0", warn.context.get("stage_id"));
        assertEquals("11111111-1111-4111-8111-111111111111", warn.context.get("session_id"));
        assertEquals(Thread.currentThread().getName(), warn.thread);
        String json = lines.get(1).json();
        for (String part : new String[] {"\"Event\":\"SparkscopeLogLine\"", "\"Level\":\"ERROR\"",
            "\"Logger\":\"org.apache.spark.scheduler.TaskSetManager\"",
            "\"Thrown\":\"java.lang.ArithmeticException: [DIVIDE_BY_ZERO] Division by zero\\n\\tat ",
            "\"Job Tags\":\"\"", "\"Context\":{}"}) {
            assertTrue(json.contains(part), part + " in " + json);
        }
        assertEquals(2, forwarder.forwarded());
        assertEquals(0, forwarder.dropped());
    }

    @Test
    void boundsSizeRateAndQueue() {
        forwarder = LogForwarder.install(5, 1_000);
        Logger log = LogManager.getLogger("org.apache.spark.Test");
        log.warn("x".repeat(10_000));
        LogForwarder.Line big = forwarder.poll();
        assertNotNull(big);
        assertEquals(LogForwarder.MAX_MESSAGE, big.message.length());
        assertTrue(big.message.endsWith("…"));
        for (int i = 0; i < 8; i++) {
            log.warn("line {}", i);
        }
        assertEquals(5, drain().size(), "the queue holds 5");
        assertEquals(3, forwarder.dropped());
        forwarder.uninstall();

        forwarder = LogForwarder.install(100, 3);
        long before = System.currentTimeMillis() / 1000;
        for (int i = 0; i < 10; i++) {
            LogManager.getLogger("org.apache.spark.Test").warn("burst {}", i);
        }
        int got = drain().size();
        if (System.currentTimeMillis() / 1000 == before) { // all in one second
            assertEquals(3, got);
            assertEquals(7, forwarder.dropped());
        } else {
            assertTrue(got <= 6, "two seconds at most: " + got);
        }
    }

    @Test
    void aThreadsJobTagsComeFromTheBoundContextOnly() {
        forwarder = LogForwarder.install(10, 100);
        Logger log = LogManager.getLogger("org.apache.spark.sql.connect.Test");
        log.warn("before the context is active");
        forwarder.bindIfUnbound(); // no SparkContext is active in this JVM: nothing is bound
        log.warn("still unbound");
        ThreadLocal<String> tags = ThreadLocal.withInitial(() -> null);
        forwarder.bind(key -> "spark.job.tags".equals(key) ? tags.get() : null);
        tags.set("SparkConnect_OperationTag_User_ivy_Session_s_Operation_o,"
                + "SparkConnect_SessionTag_User_ivy_Session_s_Tag_cell-1");
        log.warn("inside an operation");
        tags.set(null);
        log.warn("outside");
        List<LogForwarder.Line> lines = drain();
        assertEquals(4, lines.size(), lines.toString());
        assertEquals("", lines.get(0).jobTags);
        assertEquals("", lines.get(1).jobTags);
        assertTrue(lines.get(2).jobTags.endsWith("_Tag_cell-1"), lines.get(2).jobTags);
        assertEquals("", lines.get(3).jobTags);
    }

    @Test
    void uninstalledForwardsNothing() {
        forwarder = LogForwarder.install(10, 100);
        forwarder.uninstall();
        LogManager.getLogger("org.apache.spark.Test").error("after");
        assertNull(forwarder.poll());
        forwarder = null;
    }

    @Test
    void thrownIsBounded() {
        Exception deep = new RuntimeException("boom");
        String text = LogForwarder.thrown(deep);
        assertTrue(text.startsWith("java.lang.RuntimeException: boom\n\tat "), text);
        long frames = text.lines().filter(l -> l.startsWith("\tat ")).count();
        assertTrue(frames <= LogForwarder.MAX_FRAMES, text);
        assertEquals("", LogForwarder.thrown(null));
    }
}
