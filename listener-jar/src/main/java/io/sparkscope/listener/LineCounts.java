package io.sparkscope.listener;

/**
 * The sender's own count of lines, reported in the stats line so that every loss is visible.
 * Sender thread only; what the bus thread drops (a full queue) is counted apart.
 */
final class LineCounts {
    /** Flushed to the agent, the hello included. */
    long sent;
    /** Written to the buffer, not yet flushed: sent once flushed, dropped if the flush fails. */
    long pending;
    /** Event and progress lines written: whether anything happened since the last stats line. */
    long data;
    /** Never sent: the agent was away, the event could not be serialized, or the write failed. */
    long dropped;
    /** Connections after the first. */
    long reconnects;
}
