package io.sparkscope.listener;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.concurrent.atomic.AtomicReference;

import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

/** The hello's UI address, and the line that brings it when Spark's UI answered only later. */
class HelloTest {
    @Test
    void aUiAddressThatCameAfterTheHelloIsSentOncePerConnection() {
        AtomicReference<String> ui = new AtomicReference<>("");
        Hello hello = new Hello(new SparkConf(false).set("spark.app.id", "app-1"), ui::get);
        assertTrue(hello.line("app-1", "n1").contains("\"uiUrl\":\"\""));
        assertNull(hello.lateUiUrlLine(1L), "no address yet: nothing to say");

        ui.set("http://driver:4040");
        assertEquals("{\"Event\":\"SparkscopeUiUrl\",\"time\":2,\"uiUrl\":\"http://driver:4040\"}",
                hello.lateUiUrlLine(2L));
        assertNull(hello.lateUiUrlLine(3L), "sent once");

        // a reconnect's hello carries it; nothing late to say then
        assertTrue(hello.line("app-1", "n2").contains("\"uiUrl\":\"http://driver:4040\""));
        assertNull(hello.lateUiUrlLine(4L));
    }

    @Test
    void withTheUiOffOrAnOverrideNothingComesLate() {
        AtomicReference<String> ui = new AtomicReference<>("http://driver:4040");
        Hello off = new Hello(new SparkConf(false).set("spark.ui.enabled", "false"), ui::get);
        assertTrue(off.line("a", "n").contains("\"uiUrl\":\"\""));
        assertNull(off.lateUiUrlLine(1L));

        Hello given = new Hello(new SparkConf(false)
                .set(ListenerConfig.UI_URL, "https://proxy/spark"), () -> "");
        assertTrue(given.line("a", "n").contains("\"uiUrl\":\"https://proxy/spark\""));
        assertNull(given.lateUiUrlLine(1L));
    }
}
