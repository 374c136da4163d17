package io.sparkscope.listener;

/** The few hand-written lines (hello, progress, stats): flat objects of strings and numbers. */
final class Json {
    private final StringBuilder sb = new StringBuilder(256);
    private boolean first = true;

    Json(String event) {
        this();
        field("Event", event);
    }

    /** A plain object, for a value nested in a line. */
    Json() {
        sb.append('{');
    }

    Json field(String name, String value) {
        key(name);
        quote(sb, value == null ? "" : value);
        return this;
    }

    Json field(String name, long value) {
        key(name);
        sb.append(value);
        return this;
    }

    Json field(String name, boolean value) {
        key(name);
        sb.append(value);
        return this;
    }

    /** A value that is already JSON (an object built with {@link #Json()}). */
    Json raw(String name, String json) {
        key(name);
        sb.append(json);
        return this;
    }

    String end() {
        return sb.append('}').toString();
    }

    private void key(String name) {
        if (!first) {
            sb.append(',');
        }
        first = false;
        quote(sb, name);
        sb.append(':');
    }

    static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    sb.append("\\\"");
                    break;
                case '\\':
                    sb.append("\\\\");
                    break;
                case '\n':
                    sb.append("\\n");
                    break;
                case '\r':
                    sb.append("\\r");
                    break;
                case '\t':
                    sb.append("\\t");
                    break;
                default:
                    if (c < 0x20 || c == 0x2028 || c == 0x2029) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }
}
