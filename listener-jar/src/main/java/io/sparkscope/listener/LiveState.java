package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * What is live right now, as already-serialized lines, so a (re)connected agent can be told the
 * whole picture again: the snapshot. Owned by the sender thread. Each kind is capped; when full,
 * the oldest entry goes (most likely something whose end event Spark dropped) and is counted.
 *
 * <p>A stage attempt's entry outlives its completion while a running job still includes it: its
 * lines are the StageSubmitted, its latest cumulative progress line and its StageCompleted, so a
 * snapshot tells an agent that missed them how far a running job has got.
 */
final class LiveState {
    enum Kind { APP, EXECUTOR, SESSION, OPERATION, SQL, JOB, STAGE }

    private static final int MAX_LINES_PER_ENTRY = 16;

    private static final class Line {
        final long seq;
        final String json;

        Line(long seq, String json) {
            this.seq = seq;
            this.json = json;
        }
    }

    /** One live thing: its lines, and for a stage attempt its latest progress line. */
    private static final class Entry {
        final List<Line> lines = new ArrayList<>(2);
        Line progress;
        boolean completed;
    }

    private final int cap;
    private final EnumMap<Kind, LinkedHashMap<String, Entry>> maps = new EnumMap<>(Kind.class);
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
        LinkedHashMap<String, Entry> m = maps.get(kind);
        Entry e = new Entry();
        e.lines.add(new Line(seq++, json));
        m.remove(key); // re-insert at the end: order follows the latest start
        m.put(key, e);
        if (m.size() > cap) {
            Iterator<String> it = m.keySet().iterator();
            it.next();
            it.remove();
            evicted++;
        }
    }

    /** Adds a later line (e.g. an operation's Analyzed) to a live entry; ignored if not live. */
    void append(Kind kind, String key, String json) {
        Entry e = maps.get(kind).get(key);
        if (e != null && e.lines.size() < MAX_LINES_PER_ENTRY) {
            e.lines.add(new Line(seq++, json));
        }
    }

    /** A stage attempt's completion: kept with its entry until no running job needs it. */
    void complete(Kind kind, String key, String json) {
        Entry e = maps.get(kind).get(key);
        if (e != null) {
            append(kind, key, json);
            e.completed = true;
        }
    }

    /** Replaces the entry's progress line with a newer one; ignored if not live. */
    void progress(Kind kind, String key, String json) {
        Entry e = maps.get(kind).get(key);
        if (e != null) {
            e.progress = new Line(seq++, json);
        }
    }

    boolean isCompleted(Kind kind, String key) {
        Entry e = maps.get(kind).get(key);
        return e != null && e.completed;
    }

    void remove(Kind kind, String key) {
        maps.get(kind).remove(key);
    }

    /** Removes the entries whose key matches. */
    void removeIf(Kind kind, Predicate<String> which) {
        maps.get(kind).keySet().removeIf(which);
    }

    boolean contains(Kind kind, String key) {
        return maps.get(kind).containsKey(key);
    }

    int size(Kind kind) {
        return maps.get(kind).size();
    }

    /** Entries evicted because their kind was full, since the listener started. */
    long evicted() {
        return evicted;
    }

    /** Every live line, in the order the events originally arrived. */
    List<String> linesInOrder() {
        List<Line> all = new ArrayList<>();
        for (Map<String, Entry> m : maps.values()) {
            for (Entry e : m.values()) {
                all.addAll(e.lines);
                if (e.progress != null) {
                    all.add(e.progress);
                }
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
