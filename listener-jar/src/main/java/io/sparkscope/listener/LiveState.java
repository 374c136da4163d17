package io.sparkscope.listener;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Predicate;

/**
 * What is live right now, as already-serialized lines, so a (re)connected agent can be told the
 * whole picture again: the snapshot. Owned by the sender thread. Each kind is capped; when full,
 * the oldest entry goes (most likely something whose end event Spark dropped) and is counted.
 *
 * <p>A running job's entry knows its stage ids. A stage attempt's entry outlives its completion
 * while a running job still includes it: it keeps the StageSubmitted, the attempt's first failed
 * TaskEnd, its latest cumulative progress line and its StageCompleted, so a snapshot tells an
 * agent that missed them how far a running job has got and why an attempt failed. When a job ends
 * (or is evicted, or reaped) its stage attempts go with it, except those another running job
 * shares.
 */
final class LiveState {
    enum Kind { APP, EXECUTOR, SESSION, OPERATION, SQL, JOB, STAGE }

    private static final int MAX_LINES_PER_ENTRY = 16;
    private static final int[] NO_STAGES = new int[0];

    private static final class Line {
        final long seq;
        final String json;

        Line(long seq, String json) {
            this.seq = seq;
            this.json = json;
        }
    }

    /** One live thing: its lines; for a job its stage ids; for a stage attempt its extras. */
    private static final class Entry {
        final List<Line> lines = new ArrayList<>(2);
        int[] stageIds = NO_STAGES;
        String failedTaskEnd;
        String progress;
        String completion;
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
        start(kind, key, json, NO_STAGES);
    }

    /** A running job, with the ids of its stages (from its JobStart). */
    void putJob(String key, String json, int[] stageIds) {
        start(Kind.JOB, key, json, stageIds);
    }

    private void start(Kind kind, String key, String json, int[] stageIds) {
        LinkedHashMap<String, Entry> m = maps.get(kind);
        Entry e = new Entry();
        e.stageIds = stageIds; // before any eviction: the new job may share the evicted one's
        e.lines.add(new Line(seq++, json));
        m.remove(key); // re-insert at the end: order follows the latest start
        m.put(key, e);
        if (m.size() > cap) {
            Iterator<Map.Entry<String, Entry>> it = m.entrySet().iterator();
            Entry oldest = it.next().getValue();
            it.remove();
            evicted++;
            if (kind == Kind.JOB) {
                dropStagesOf(oldest); // an evicted job keeps no stage attempts alive
            }
        }
    }

    /** Adds a later line (e.g. an operation's Analyzed) to a live entry; ignored if not live. */
    void append(Kind kind, String key, String json) {
        Entry e = maps.get(kind).get(key);
        if (e != null && e.lines.size() < MAX_LINES_PER_ENTRY) {
            e.lines.add(new Line(seq++, json));
        }
    }

    /**
     * Replaces what follows the entry's first line with this one (an SQL execution's latest
     * plan); false if the entry is not live.
     */
    boolean latest(Kind kind, String key, String json) {
        Entry e = maps.get(kind).get(key);
        if (e == null) {
            return false;
        }
        while (e.lines.size() > 1) {
            e.lines.remove(e.lines.size() - 1);
        }
        e.lines.add(new Line(seq++, json));
        return true;
    }

    /** A stage attempt's completion: kept with its entry until no running job needs it. */
    void complete(String stageKey, String json) {
        Entry e = maps.get(Kind.STAGE).get(stageKey);
        if (e != null) {
            e.completion = json;
        }
    }

    /** Replaces a stage attempt's progress line with a newer one; false if it is not live. */
    boolean progress(String stageKey, String json) {
        Entry e = maps.get(Kind.STAGE).get(stageKey);
        if (e == null) {
            return false;
        }
        e.progress = json;
        return true;
    }

    /** Whether the stage attempt is live and has no failed TaskEnd kept yet. */
    boolean wantsFailedTaskEnd(String stageKey) {
        Entry e = maps.get(Kind.STAGE).get(stageKey);
        return e != null && e.failedTaskEnd == null;
    }

    /** Keeps the attempt's first failed TaskEnd (later ones are ignored); ignored if not live. */
    void failedTaskEnd(String stageKey, String json) {
        Entry e = maps.get(Kind.STAGE).get(stageKey);
        if (e != null && e.failedTaskEnd == null) {
            e.failedTaskEnd = json;
        }
    }

    boolean isCompleted(String stageKey) {
        Entry e = maps.get(Kind.STAGE).get(stageKey);
        return e != null && e.completion != null;
    }

    void remove(Kind kind, String key) {
        maps.get(kind).remove(key);
    }

    /**
     * Ends a running job: it and its stage attempts leave, except the attempts another running
     * job shares. False if it was not live.
     */
    boolean removeJob(String key) {
        Entry job = maps.get(Kind.JOB).remove(key);
        if (job == null) {
            return false;
        }
        dropStagesOf(job);
        return true;
    }

    private void dropStagesOf(Entry job) {
        if (job.stageIds.length == 0) {
            return;
        }
        Set<Integer> gone = new HashSet<>();
        for (int id : job.stageIds) {
            if (!stageNeeded(id)) {
                gone.add(id);
            }
        }
        if (!gone.isEmpty()) {
            maps.get(Kind.STAGE).keySet().removeIf(k -> gone.contains(stageIdOf(k)));
        }
    }

    /** Whether a running job includes the stage: its attempts then stay live after completion. */
    boolean stageNeeded(int stageId) {
        for (Entry job : maps.get(Kind.JOB).values()) {
            for (int id : job.stageIds) {
                if (id == stageId) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The key of a stage attempt's entry. */
    static String stageKey(int stageId, int attemptId) {
        return stageId + "." + attemptId;
    }

    private static int stageIdOf(String stageKey) {
        int dot = stageKey.indexOf('.');
        try {
            return Integer.parseInt(dot < 0 ? stageKey : stageKey.substring(0, dot));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The ids of the running jobs, oldest first. */
    int[] jobIds() {
        int[] out = new int[maps.get(Kind.JOB).size()];
        int n = 0;
        for (String k : maps.get(Kind.JOB).keySet()) {
            try {
                out[n] = Integer.parseInt(k);
                n++;
            } catch (NumberFormatException ignored) {
                // every job key is a job id; nothing else is ever put there
            }
        }
        return n == out.length ? out : Arrays.copyOf(out, n);
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

    /**
     * Every live line, in the order the events originally arrived. A stage attempt's lines go out
     * together where its StageSubmitted arrived: the submission, its first failed TaskEnd, its
     * progress line, then its completion, so the agent has the final counts before it closes the
     * attempt (tasks of a failed or speculative attempt may end after its StageCompleted).
     */
    List<String> linesInOrder() {
        List<Line> firsts = new ArrayList<>();
        Map<Line, Entry> stages = new IdentityHashMap<>();
        for (Map.Entry<Kind, LinkedHashMap<String, Entry>> m : maps.entrySet()) {
            for (Entry e : m.getValue().values()) {
                if (m.getKey() == Kind.STAGE) {
                    firsts.add(e.lines.get(0));
                    stages.put(e.lines.get(0), e);
                } else {
                    firsts.addAll(e.lines);
                }
            }
        }
        firsts.sort((a, b) -> Long.compare(a.seq, b.seq));
        List<String> out = new ArrayList<>(firsts.size() + stages.size() * 3);
        for (Line l : firsts) {
            Entry stage = stages.get(l);
            if (stage == null) {
                out.add(l.json);
                continue;
            }
            for (Line s : stage.lines) {
                out.add(s.json);
            }
            addIfSet(out, stage.failedTaskEnd);
            addIfSet(out, stage.progress);
            addIfSet(out, stage.completion);
        }
        return out;
    }

    private static void addIfSet(List<String> out, String line) {
        if (line != null) {
            out.add(line);
        }
    }
}
