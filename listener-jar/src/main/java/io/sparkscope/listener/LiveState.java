package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What is live right now, as already-serialized lines, so a (re)connected agent can be told the
 * whole picture again. Owned by the sender thread. Each kind is capped; when full, the oldest
 * entry goes (most likely something whose end event Spark dropped).
 */
final class LiveState {
    enum Kind { APP, EXECUTOR, SESSION, OPERATION, SQL, JOB, STAGE }

    private static final class Line {
        final long seq;
        final String json;

        Line(long seq, String json) {
            this.seq = seq;
            this.json = json;
        }
    }

    private final int cap;
    private final EnumMap<Kind, LinkedHashMap<String, List<Line>>> maps = new EnumMap<>(Kind.class);
    private long seq;
    private long evicted;

    LiveState(int cap) {
        this.cap = cap;
        for (Kind k : Kind.values()) {
            maps.put(k, new LinkedHashMap<>());
        }
    }

    /** Starts (or restarts) the entry {@code key} with one line. */
    void put(Kind kind, String key, String json) {
        LinkedHashMap<String, List<Line>> m = maps.get(kind);
        List<Line> lines = new ArrayList<>(kind == Kind.OPERATION ? 4 : 1);
        lines.add(new Line(seq++, json));
        m.remove(key); // re-insert at the end: order follows the latest start
        m.put(key, lines);
        if (m.size() > cap) {
            Iterator<String> it = m.keySet().iterator();
            it.next();
            it.remove();
            evicted++;
        }
    }

    /** Adds a later line (e.g. an operation's Finished) to a live entry; ignored if not live. */
    void append(Kind kind, String key, String json) {
        List<Line> lines = maps.get(kind).get(key);
        if (lines != null && lines.size() < 16) {
            lines.add(new Line(seq++, json));
        }
    }

    void remove(Kind kind, String key) {
        maps.get(kind).remove(key);
    }

    int size(Kind kind) {
        return maps.get(kind).size();
    }

    long evicted() {
        return evicted;
    }

    /** Every live line, in the order the events originally arrived. */
    List<String> linesInOrder() {
        List<Line> all = new ArrayList<>();
        for (Map<String, List<Line>> m : maps.values()) {
            for (List<Line> lines : m.values()) {
                all.addAll(lines);
            }
        }
        all.sort(Comparator.comparingLong(l -> l.seq));
        List<String> out = new ArrayList<>(all.size());
        for (Line l : all) {
            out.add(l.json);
        }
        return out;
    }
}
