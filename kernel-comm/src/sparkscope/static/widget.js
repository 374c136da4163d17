// sparkscope cell widget: the Spark jobs of one notebook cell run, drawn from the model's synced
// traits (see sparkscope/widget.py for their names). The kernel decides what they say (findings,
// root causes, summary, links: sparkscope/cellview.py); this module only draws them, one function
// per part of the view, and runs durations on between updates. Plain ESM, no build step, no
// library.
//
// DOM contract (tests read it): root .sparkscope-cell[data-tag][data-state][data-view]
// [data-updated-at][data-last-stage-completion-ms][data-last-stage-seen-at]; header badges
// .sparkscope-pill-<executors|cores|busy|running|succeeded|failed>[data-value]; the details line
// .sparkscope-details; views .sparkscope-tab[data-view][aria-selected].
// Jobs view: .sparkscope-job[data-job-id][data-status] containing .sparkscope-bar[data-completed|
// running|failed|skipped|total], .sparkscope-job-status, a.sparkscope-job-link, a.sparkscope-sql-link,
// and for a failed job .sparkscope-root-cause (.sparkscope-exception-class, .sparkscope-exception-
// message, .sparkscope-failure-where, details.sparkscope-trace); .sparkscope-stage[data-stage-id]
// [data-attempt-id][data-status] with a.sparkscope-stage-link, .sparkscope-stage-hints and the
// badges .sparkscope-hint-skew / -spill / -small-tasks / -partition-too-large / -gc (button.sparkscope-insert-fix
// [data-kind][data-finding][data-inserted] beside a finding with a fix), button.sparkscope-stuck ("Is it stuck?", shown
// once [data-stuck-at] has passed) and its answer .sparkscope-thread-dump[data-status][data-task-id]
// [data-state][data-error] with pre.sparkscope-thread-dump-frames. .sparkscope-summary.
// The advisor: every finding drawn is a .sparkscope-finding[data-finding=<kind>][data-scope=
// stage|plan|cell][data-fix] (data-fix: the code Insert fix puts in a cell, when there is one)
// with its evidence in its title: the stage's badge (its insert-fix button next to it), the plan
// node's badge (Plan view) and, for the findings on no stage (plan and cell ones), an item of the
// list .sparkscope-advisor[data-count] below the Jobs view's jobs, the button inside it.
// .sparkscope-memory[data-peak-heap-bytes][data-max-heap-bytes][data-heap-share][data-gc-share]
// .sparkscope-contention[data-start-ms][data-end-ms][data-cores-ms][data-own-ms][data-others-ms]
// [data-own-share][data-others-share][data-other-sessions][data-full-ms] once other work ran beside.
// .sparkscope-diff[data-ratio][data-input-ratio][data-duration-ms][data-previous-duration-ms]
// [data-input-bytes][data-previous-input-bytes][data-previous-tag]: how a rerun differs from the
// cell's previous run (shown folded too).
// Tasks view: .sparkscope-tasks-view[data-samples][data-max-active][data-last-active][data-cores]
// with an svg (path.sparkscope-active-area, path.sparkscope-cores-line,
// line.sparkscope-job-marker[data-job-id][data-kind=start|end]).
// Timeline view: .sparkscope-timeline with .sparkscope-tl-job[data-job-id][data-status] and
// .sparkscope-tl-stage[data-stage-id][data-attempt-id][data-status] rows, each with a
// .sparkscope-tl-bar[data-start][data-end]; button.sparkscope-tl-open asks for a stage's tasks,
// shown in .sparkscope-tl-tasks[data-status] as .sparkscope-tl-lane[data-executor] rows of
// .sparkscope-tl-task[data-task-id][data-status] (phases .sparkscope-phase-<name>); a task's
// details in .sparkscope-task-popup.
// Logs view: .sparkscope-logs-view[data-lines] with .sparkscope-log-line[data-level][data-seq]
// [data-job-id][data-stage-id] rows (.sparkscope-log-message, details.sparkscope-log-thrown);
// the Logs tab carries [data-count] and [data-errors]; a.sparkscope-executor-log[data-executor-id]
// [data-kind] link each executor's stdout and stderr.
// Plan view: .sparkscope-plan-view[data-executions] (.sparkscope-plan-empty without a SQL query);
// per SQL execution .sparkscope-plan-execution[data-execution-id][data-status][data-plan-version]
// [data-expanded] with .sparkscope-plan-head (button.sparkscope-plan-toggle, .sparkscope-plan-aqe
// once AQE re-planned) and .sparkscope-plan-tree of .sparkscope-plan-node[data-node-name]
// [data-node-index][data-depth][data-share][data-rows][data-top] rows (.sparkscope-plan-name,
// .sparkscope-plan-detail, button.sparkscope-plan-node-toggle, .sparkscope-plan-heat, chips
// .sparkscope-plan-metric[data-metric-name][data-metric-type], and for a node with findings
// [data-findings] and .sparkscope-plan-findings: their badges and insert-fix buttons), then .sparkscope-plan-more
// [data-more]; the Plan tab carries [data-count].
// Cancel: button .sparkscope-cancel (the whole cell run, while it runs) and .sparkscope-job-cancel
// inside each running .sparkscope-job (both [data-unavailable] when the kernel has no agent
// connection); the outcome in .sparkscope-cancel-result[data-status](sent|pending|done)[data-ok]
// [data-code][data-target][data-job-id]; data-state `cancelled` once a cancelled cell run has
// ended; .sparkscope-job[data-cancelled] for jobs cancelled alone.
// Gaps the numbers went through: .sparkscope-notice.sparkscope-notice-<kind> (role=status).
// Hidden: .sparkscope-cell[data-hidden] shows only .sparkscope-hidden-bar with
// button.sparkscope-show-all; button.sparkscope-hide-all hides every widget of the notebook.

// Per cell run (by tag), shared by every view of it: a re-rendered output keeps the user's
// expand/collapse choices and the time a stage completion was first shown.
const VIEW_STATE = new Map();

function stateFor(tag) {
  let s = VIEW_STATE.get(tag);
  if (!s) {
    s = {
      expanded: new Set(), // job keys with their stages shown
      traces: new Set(), // failures whose stack trace is open
      opened: new Set(), // timeline: stage keys whose tasks are shown
      popup: null, // timeline: the task whose details are shown
      collapsed: null, // null: follow data-state; true/false: the user's choice
      lastStageMs: null,
      lastStageSeenAt: null,
      serverMs: 0,
      serverSeenAt: 0,
      sent: null, // the last cancel request this page sent: {requestId, target, jobId, at}
      plansClosed: new Set(), // plan: SQL executions folded
      planNodesClosed: new Set(), // plan: nodes whose subtree is folded
    };
    VIEW_STATE.set(tag, s);
  }
  return s;
}

// ---- DOM and number helpers

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
// What an UNKNOWN status means, on hover: over, but how it ended was lost.
const UNKNOWN_END =
  "Over, but how it ended is unknown: it ended while the sparkscope agent could not see it and Spark's REST API could not say (UI off or unreachable), or its driver went away.";

// A status label, explained when it is UNKNOWN.
function statusLabel(cls, status) {
  const node = el("span", cls, status);
  if (status === "UNKNOWN") node.title = UNKNOWN_END;
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function button(cls, text, label, onClick) {
  const b = el("button", cls, text);
  b.type = "button";
  b.setAttribute("aria-label", label);
  b.title = label;
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();
    onClick(ev);
  });
  return b;
}

// Only http and https addresses become links, whatever the kernel was told (the agent checks
// them as well): a "javascript:" address must never reach an href.
// The kernel's rule (cellview.is_http_url): http or https, a host right after "//", no
// whitespace, quotes or control characters.
function isHttpUrl(href) {
  if (typeof href !== "string" || !/^https?:\/\/[^/?#\s"'<>`]+[^\s"'<>`]*$/i.test(href)) {
    return false;
  }
  for (const c of href) {
    const code = c.codePointAt(0);
    if (code < 32 || code === 127) return false;
  }
  return true;
}

// A page that reaches Spark's UI through its own server (JupyterLab with sparkscope's extension
// and its proxy on) offers `globalThis.sparkscopeUiProxy(href)`: the proxied address of a link,
// or null. Any other host (VS Code, a static page) keeps Spark's own address.
function throughProxy(href) {
  const proxy = globalThis.sparkscopeUiProxy;
  if (typeof proxy !== "function") return href;
  try {
    const proxied = proxy(href);
    return isHttpUrl(proxied) ? proxied : href;
  } catch {
    return href;
  }
}

function link(cls, text, href, label) {
  if (!isHttpUrl(href)) return el("span", cls, text);
  const a = el("a", cls, text);
  a.href = throughProxy(href);
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.title = label;
  a.setAttribute("aria-label", label);
  a.addEventListener("click", (ev) => ev.stopPropagation());
  return a;
}

// The same formats as sparkscope/cellview.py's format_duration and format_short.
function fmtDuration(ms) {
  const s = Math.max(ms, 0) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function fmtShort(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return fmtDuration(ms);
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function pct(n, total) {
  return total > 0 ? Math.max(0, Math.min(100, (100 * n) / total)) : 0;
}

function jobKey(job) {
  return `${job.appId}/${job.jobId}`;
}

function stageKey(s) {
  return `${s.appId}/${s.stageId}/${s.attemptId}`;
}

function requestId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const STATES = ["running", "done", "cancelled"];
const VIEWS = [
  ["jobs", "Jobs", "Jobs and their stages"],
  ["tasks", "Tasks", "Running tasks against the cores available, over the cell's run"],
  ["timeline", "Timeline", "Jobs and stages on a time axis; open a stage for its tasks"],
  ["logs", "Logs", "The driver's WARN and ERROR lines about this cell's jobs (only your own)"],
  ["plan", "Plan", "The physical plan of each SQL query the cell ran, with live operator metrics"],
];
// After this long without the kernel taking a cancel request, say why it may not.
const KERNEL_SILENT_MS = 3000;
const PHASES = [
  ["schedulerDelayMs", "scheduler-delay", "scheduler delay"],
  ["deserializeMs", "deserialize", "task deserialization"],
  ["shuffleReadMs", "shuffle-read", "shuffle read"],
  ["computeMs", "compute", "executor computing"],
  ["shuffleWriteMs", "shuffle-write", "shuffle write"],
  ["serializeMs", "serialize", "result serialization"],
  ["gettingResultMs", "getting-result", "getting result"],
];
const TRAITS = [
  "tag",
  "state",
  "cell_done",
  "jobs",
  "stages",
  "server_time_ms",
  "cancel",
  "cancelled_jobs",
  "agent_error",
  "notices",
  "context",
  "cluster",
  "samples",
  "errors",
  "task_lists",
  "logs",
  "plans",
  "plan_shapes",
  "plans_dropped",
  "contention",
  "memory",
  "diff",
  "view",
  "hidden",
  "overview",
  "findings",
  "root_causes",
  "links",
];

// What one draw works from: the traits, read once, with their defaults.
function readTraits(model) {
  const view = model.get("view");
  const state = model.get("state");
  return {
    tag: model.get("tag") || "",
    state: STATES.includes(state) ? state : "running",
    view: VIEWS.some(([name]) => name === view) ? view : "jobs",
    hidden: !!model.get("hidden"),
    serverTimeMs: model.get("server_time_ms") || 0,
    jobs: model.get("jobs") || [],
    stages: model.get("stages") || [],
    overview: model.get("overview") || {},
    findings: model.get("findings") || [],
    rootCauses: model.get("root_causes") || [],
    links: { ui: "", jobs: {}, sql: {}, stages: {}, executorLogs: [], ...(model.get("links") || {}) },
    cluster: model.get("cluster") || {},
    samples: model.get("samples") || [],
    notices: model.get("notices") || [],
    errors: model.get("errors") || [],
    taskLists: model.get("task_lists") || {},
    logs: model.get("logs") || [],
    plans: joinPlans(model.get("plans") || [], model.get("plan_shapes") || {}),
    plansDropped: model.get("plans_dropped") || 0,
    contention: model.get("contention") || {},
    memory: model.get("memory") || {},
    diff: model.get("diff") || {},
    cancel: model.get("cancel") || {},
    cancelledJobs: new Set(model.get("cancelled_jobs") || []),
    agentError: model.get("agent_error") || "",
  };
}

// The agent's clock now: its time at the last update, run on by this page's clock since.
function serverNow(vs) {
  return vs.serverMs ? vs.serverMs + (Date.now() - vs.serverSeenAt) : Date.now();
}

function noteServerTime(vs, ms) {
  if (ms !== vs.serverMs) {
    vs.serverMs = ms;
    vs.serverSeenAt = Date.now();
  }
}

// `overview.text` and the elapsed time, which runs on while a job runs.
function summaryText(overview, now) {
  const e = overview.elapsed;
  if (!e) return overview.text || "";
  const end = e.live ? Math.max(e.endMs, now) : e.endMs;
  return `${overview.text} · ${fmtDuration(end - e.startMs)}`;
}

// ---- the whole cell: `t` the traits, `vs` this page's state of the cell run, `act` what the
// drawing can do: redraw, schedule (a redraw after the current traits settle), send, setView

function drawCell(root, t, vs, act) {
  noteServerTime(vs, t.serverTimeMs);
  const collapsed = vs.collapsed === null ? t.state !== "running" : vs.collapsed;
  const now = serverNow(vs);

  // stage-completion latency probe: newest completion (Spark's clock) and when we first drew it
  let lastStage = null;
  for (const s of t.stages) {
    if (s.status === "COMPLETE" && s.completionTimeMs && (lastStage === null || s.completionTimeMs > lastStage)) {
      lastStage = s.completionTimeMs;
    }
  }
  if (lastStage !== null && lastStage !== vs.lastStageMs) {
    vs.lastStageMs = lastStage;
    vs.lastStageSeenAt = Date.now();
  }

  root.replaceChildren();
  root.dataset.tag = t.tag;
  root.dataset.state = t.state;
  root.dataset.view = t.view;
  if (vs.lastStageMs !== null) {
    root.dataset.lastStageCompletionMs = String(vs.lastStageMs);
    root.dataset.lastStageSeenAt = String(vs.lastStageSeenAt);
  }
  root.dataset.updatedAt = String(Date.now());
  if (t.hidden) {
    root.dataset.hidden = "true";
    root.appendChild(hiddenBar(act));
    return;
  }
  delete root.dataset.hidden;
  root.classList.toggle("sparkscope-collapsed", collapsed);
  root.classList.toggle("sparkscope-has-failed", (t.overview.jobCounts || {}).failed > 0);

  root.appendChild(header(t, vs, collapsed, now, act));
  const rerun = diffLine(t.diff);
  if (rerun) root.appendChild(rerun);
  if (!collapsed) {
    root.appendChild(toolbar(t.view, t.links.ui, act, t.logs, t.plans));
    const details = detailsLine(t.overview);
    if (details) root.appendChild(details);
    const shared = contentionLine(t.contention);
    if (shared) root.appendChild(shared);
    const memory = memoryLine(t.memory);
    if (memory) root.appendChild(memory);
  }

  const result = cancelResult(t.cancel, vs);
  if (result) root.appendChild(result);
  // Gaps the numbers went through: said, never hidden (a reconnect, drops, corrections).
  for (const n of t.notices) {
    const line = el("div", `sparkscope-notice sparkscope-notice-${n.kind || "unspecified"}`, n.message || "");
    line.setAttribute("role", "status");
    root.appendChild(line);
  }
  for (const e of t.errors) {
    const line = el("div", "sparkscope-op-error", e.message);
    line.setAttribute("role", "alert");
    root.appendChild(line);
  }

  const body = el("div", "sparkscope-body");
  // The jobs stay in the DOM in every view (collapsed ones too): their numbers are the widget's.
  const list = jobsView(t, vs, now, act);
  list.hidden = t.view !== "jobs";
  body.appendChild(list);
  if (!collapsed && t.view === "tasks") body.appendChild(tasksView(t.jobs, t.samples, t.cluster, now));
  if (!collapsed && t.view === "timeline") body.appendChild(timelineView(t, vs, now, act));
  if (!collapsed && t.view === "logs") body.appendChild(logsView(t.logs, t.links.executorLogs || []));
  if (!collapsed && t.view === "plan") body.appendChild(planView(t.plans, t.plansDropped, t.findings, vs, now, act));
  root.appendChild(body);
}

// A plan's operators come once (plan_shapes: what they are), their values with every update
// (plans: in the same order); joined here into the nodes the Plan view draws. A metric that
// stayed 0 (push-based shuffle's without it, a spill that did not happen) is named in the
// node's `zeros`, not drawn as a chip.
const ROWS = "number of output rows";
function joinPlans(plans, shapes) {
  return plans.map((p) => {
    const shape = shapes[p.shape] || [];
    const nodes = [];
    (p.nodes || []).forEach((v, i) => {
      const s = shape[i];
      if (!s) return; // a shape not here yet: the node waits for it
      const metrics = [];
      const zeros = [];
      (s.metrics || []).forEach(([name, type], k) => {
        const [value, text] = (v.m || [])[k] || [null, "–"];
        if (value === 0 && name !== ROWS) zeros.push(name);
        else metrics.push({ name, type, value: value ?? null, text: text ?? "–" });
      });
      nodes.push({ index: i, parent: s.parent, depth: s.depth, name: s.name, detail: s.detail,
        metrics, zeros, rows: v.rows ?? null, timeMs: v.timeMs || 0, share: v.share || 0, top: !!v.top });
    });
    return { ...p, nodes };
  });
}

// The cell's share of a shared server over its run, beside the other sessions': shown once
// another session competed, or other work held a twentieth of the cores (less is the samples'
// grain).
function contentionLine(c) {
  if (!c || !c.text || !(c.otherSessions > 0 || c.othersShare >= 0.05)) return null;
  const line = el("div", "sparkscope-muted sparkscope-contention", c.text);
  line.title = "Over this cell's jobs' run: its tasks' run time and the rest of the server's busy task slots, as shares of the cores' time; and, while every core was busy, how long its tasks waited for a slot the others held, summed over its tasks";
  for (const k of ["startMs", "endMs", "coresMs", "ownMs", "othersMs", "ownShare", "othersShare", "otherSessions", "fullMs", "waitedMs"]) {
    line.dataset[k] = String(c[k] ?? "");
  }
  return line;
}

// The executors' memory while the cell's stages ran, and its garbage collection share.
function memoryLine(m) {
  if (!m || !m.text) return null;
  const line = el("div", "sparkscope-muted sparkscope-memory", m.text);
  line.title = "The executors' heartbeats while this cell's stages ran (Spark's peak executor metrics of its stages): heap in use (garbage included) against the heap they may grow to, non-heap memory, cached blocks; and garbage collection as a share of its tasks' run time";
  for (const k of ["peakHeapBytes", "maxHeapBytes", "heapShare", "peakOffHeapBytes", "peakStorageBytes", "gcShare"]) {
    line.dataset[k] = String(m[k] ?? "");
  }
  return line;
}

// How this run differs from the cell's previous one (the agent keeps the previous run's
// fingerprint per notebook and cell, across restarts).
function diffLine(d) {
  if (!d || !d.text) return null;
  const slower = d.ratio >= 1.1;
  const line = el("div", `sparkscope-diff${slower ? " sparkscope-diff-slower" : ""}`, d.text);
  line.setAttribute("role", "status");
  line.title = "Compared with this cell's previous run" +
    (d.previousExecutionCount ? ` ([${d.previousExecutionCount}])` : "");
  for (const k of ["ratio", "inputRatio", "durationMs", "previousDurationMs", "inputBytes", "previousInputBytes", "previousTag"]) {
    line.dataset[k] = String(d[k] ?? "");
  }
  return line;
}

function hiddenBar(act) {
  const bar = el("div", "sparkscope-hidden-bar");
  bar.appendChild(el("span", "sparkscope-hidden-text", "Spark monitoring hidden"));
  bar.appendChild(
    button("sparkscope-link-button sparkscope-show-all", "Show", "Show Spark monitoring in every cell again", () =>
      act.send({ kind: "show_all" }),
    ),
  );
  return bar;
}

// ---- header, toolbar, details line

function header(t, vs, collapsed, now, act) {
  const node = el("div", "sparkscope-header");
  const fold = () => {
    vs.collapsed = !collapsed;
    act.redraw();
  };
  const toggle = button("sparkscope-toggle", collapsed ? "▸" : "▾", collapsed ? "Show the jobs" : "Hide the jobs", fold);
  toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
  node.appendChild(toggle);
  node.appendChild(el("span", "sparkscope-title", "Spark"));
  node.appendChild(pills(t.cluster, t.overview.jobCounts || {}));
  node.appendChild(el("span", "sparkscope-summary", summaryText(t.overview, now)));
  if (t.state === "cancelled") node.appendChild(el("span", "sparkscope-badge", "cancelled"));
  if (t.state === "running") {
    node.appendChild(
      cancelButton("sparkscope-cancel", "Cancel", "Cancel this cell's Spark work (every operation it started)", t, vs, { target: "cell" }, act),
    );
  }
  node.title = collapsed ? "Show the jobs" : "Hide the jobs";
  node.addEventListener("click", fold);
  return node;
}

// Executors, cores, busy slots now; the cell's jobs by state.
function pills(c, counts) {
  const box = el("span", "sparkscope-pills");
  const running = counts.running || 0;
  const succeeded = counts.succeeded || 0;
  const failed = counts.failed || 0;
  const items = [
    ["executors", c.executors || 0, plural(c.executors || 0, "executor"), "executors alive"],
    ["cores", c.cores || 0, plural(c.cores || 0, "core"), "cores (task slots) of the live executors"],
    ["busy", c.busy || 0, `${c.busy || 0} busy`, "task slots busy now, over the whole application"],
    ["running", running, `${running} running`, "of this cell's jobs running"],
    ["succeeded", succeeded, `${succeeded} ✓`, "of this cell's jobs succeeded"],
    ["failed", failed, `${failed} failed`, "of this cell's jobs failed"],
  ];
  for (const [name, value, text, title] of items) {
    if ((name === "running" || name === "failed" || name === "succeeded") && !value) continue;
    const pill = el("span", `sparkscope-pill sparkscope-pill-${name}`, text);
    pill.dataset.value = String(value);
    pill.title = `${value} ${title}`;
    box.appendChild(pill);
  }
  return box;
}

function toolbar(view, uiLink, act, logs, plans) {
  const node = el("div", "sparkscope-toolbar");
  const tabs = el("div", "sparkscope-tabs");
  tabs.setAttribute("role", "tablist");
  for (const [name, text, title] of VIEWS) {
    const tab = button("sparkscope-tab", text, title, () => act.setView(name));
    tab.dataset.view = name;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", name === view ? "true" : "false");
    if (name === "logs") {
      const errors = logs.filter((l) => l.level !== "WARN").length;
      tab.dataset.count = String(logs.length);
      tab.dataset.errors = String(errors);
      if (logs.length) tab.textContent = `Logs (${logs.length})`;
      if (errors) tab.classList.add("sparkscope-tab-alert");
    }
    if (name === "plan") {
      tab.dataset.count = String(plans.length);
      if (plans.length) tab.textContent = `Plan (${plans.length})`;
    }
    tabs.appendChild(tab);
  }
  node.appendChild(tabs);
  if (uiLink) node.appendChild(link("sparkscope-ui-link", "Spark UI ↗", uiLink, "Open this application's Spark UI"));
  node.appendChild(
    button("sparkscope-link-button sparkscope-hide-all", "Hide all", "Hide Spark monitoring in every cell of this notebook", () =>
      act.send({ kind: "hide_all" }),
    ),
  );
  return node;
}

function detailsLine(overview) {
  if (!overview.details) return null;
  const node = el("div", "sparkscope-details", overview.details);
  if (overview.listenerGone) node.appendChild(el("span", "sparkscope-ended", " (no listener connected)"));
  return node;
}

// ---- Cancel: the buttons, and what the latest request came to

// A Cancel button: sends {kind: "cancel", target, jobId?, appId?, requestId} to the kernel.
function cancelButton(cls, label, title, t, vs, request, act) {
  const b = el("button", `sparkscope-button ${cls}`, label);
  b.type = "button";
  b.title = t.agentError ? `${title}. Not possible now: ${t.agentError}` : title;
  b.setAttribute("aria-label", title);
  if (t.agentError) {
    b.dataset.unavailable = "true";
    if (request.target === "cell") b.textContent = `${label} (no agent)`;
  }
  const inFlight = vs.sent && !settled(t.cancel, vs) && sameTarget(vs.sent, request);
  const stopping = request.target === "job" && t.cancelledJobs.has(request.jobId);
  if (inFlight || stopping) {
    b.disabled = true;
    b.textContent = "Cancelling…";
  }
  b.addEventListener("click", (ev) => {
    ev.stopPropagation(); // the header's click folds the widget
    const sent = { requestId: requestId(), ...request, at: Date.now() };
    vs.sent = sent;
    act.send({ kind: "cancel", requestId: sent.requestId, target: sent.target, jobId: sent.jobId, appId: sent.appId });
    setTimeout(act.schedule, KERNEL_SILENT_MS + 50); // to say so if the kernel stays silent
    act.redraw();
  });
  return b;
}

function sameTarget(a, b) {
  return a.target === b.target && (a.target === "cell" || (a.jobId === b.jobId && a.appId === b.appId));
}

// The kernel's answer to the last request from this page (or from any page: the trait), done.
function settled(c, vs) {
  return !vs.sent || (c.requestId === vs.sent.requestId && c.status === "done");
}

// What the latest cancel request came to: sent (the kernel has not taken it yet), pending (the
// kernel asked the agent) or done (the agent's answer, or why there was none).
function cancelResult(c, vs) {
  const sent = vs.sent;
  let status, text, ok, code, target, jobId;
  if (sent && c.requestId !== sent.requestId) {
    status = "sent";
    target = sent.target;
    jobId = sent.jobId;
    text =
      Date.now() - sent.at < KERNEL_SILENT_MS
        ? "Cancelling: sending the request to the kernel…"
        : "The kernel has not taken the cancel request: it is busy running a cell and this " +
          "frontend does not deliver widget messages to a kernel subshell (JupyterLab ≥ 4.4 " +
          "with ipykernel ≥ 7 does). Use the kernel's stop button (■) to interrupt the cell.";
  } else if (c.requestId) {
    status = c.status === "done" ? "done" : "pending";
    target = c.target;
    jobId = c.jobId;
    ok = c.ok;
    code = c.code || "";
    text = status === "pending" ? "Cancelling: asking the sparkscope agent…" : c.message || (ok ? "cancelled" : "cancel failed");
  } else {
    return null;
  }
  const node = el("div", "sparkscope-cancel-result");
  node.setAttribute("role", "status");
  node.dataset.status = status;
  node.dataset.target = target || "cell";
  if (jobId !== undefined && jobId !== null) node.dataset.jobId = String(jobId);
  if (status === "done") {
    node.dataset.ok = ok ? "true" : "false";
    node.dataset.code = code;
  }
  const what = target === "job" ? `Cancel job ${jobId}` : "Cancel";
  const verdict = status !== "done" ? "" : ok ? " ✓" : ` failed${code ? ` (${code})` : ""}`;
  node.appendChild(el("span", "sparkscope-cancel-what", `${what}${verdict}: `));
  node.appendChild(el("span", "sparkscope-cancel-message", text));
  return node;
}

// A progress bar: completed, skipped, running and failed segments of the total task count.
function bar(counts) {
  const { total, completed, skipped, running, failed } = counts;
  const node = el("div", "sparkscope-bar");
  node.dataset.completed = String(completed);
  node.dataset.running = String(running);
  node.dataset.failed = String(failed);
  node.dataset.skipped = String(skipped);
  node.dataset.total = String(total);
  node.setAttribute("role", "progressbar");
  node.setAttribute("aria-valuemin", "0");
  node.setAttribute("aria-valuemax", String(total));
  node.setAttribute("aria-valuenow", String(completed + skipped));
  let left = 100;
  for (const [name, n] of [
    ["completed", completed],
    ["skipped", skipped],
    ["running", running],
    ["failed", failed],
  ]) {
    const w = Math.min(pct(n, total), left);
    left -= w;
    if (w <= 0) continue;
    const seg = el("div", `sparkscope-seg sparkscope-seg-${name}`);
    seg.style.width = `${w}%`;
    node.appendChild(seg);
  }
  const parts = [`${completed}/${total}`];
  if (running) parts.push(`${running} running`);
  if (skipped) parts.push(`${skipped} skipped`);
  if (failed) parts.push(`${failed} failed`);
  node.appendChild(el("span", "sparkscope-bar-label", parts.join(" · ")));
  node.title = `${completed} completed, ${running} running, ${skipped} skipped, ${failed} failed of ${total} tasks`;
  return node;
}

function hintBadge(kind, text, title) {
  const b = el("span", `sparkscope-hint sparkscope-hint-${kind}`, text);
  b.title = title;
  return b;
}

// A finding's badge: its kind, where it is, its fix (when it has one) in data attributes.
function findingBadge(f) {
  const b = hintBadge(f.kind, f.label, f.title);
  markFinding(b, f);
  return b;
}

function markFinding(node, f) {
  node.classList.add("sparkscope-finding");
  node.dataset.finding = f.kind;
  node.dataset.scope = f.scope || "stage";
  if (f.fix) node.dataset.fix = f.fix;
  return node;
}

// An advisor's fix as a new cell below this one (JupyterLab's extension offers the hook), never
// run; elsewhere it is copied for the reader to paste.
function fixButton(f) {
  const b = button("sparkscope-link-button sparkscope-insert-fix", "Insert fix", `Insert a cell below with the fix:\n${f.fix}`, () => {
    const insert = globalThis.sparkscopeInsertCell;
    let done = false;
    try {
      done = typeof insert === "function" && insert(b, f.fix) === true;
    } catch {
      done = false;
    }
    if (done) {
      b.textContent = "Inserted below";
      b.dataset.inserted = "true";
    } else if (navigator.clipboard) {
      navigator.clipboard.writeText(f.fix).then(
        () => (b.textContent = "Copied: paste it in a cell"),
        () => (b.textContent = "Could not insert it"),
      );
    }
  });
  b.dataset.kind = f.kind;
  b.dataset.finding = f.kind;
  return b;
}

// The findings on no stage row (a plan's operators, the whole cell run), listed with their
// fixes below the jobs: the Plan view shows the operators' ones on their nodes too.
function advisorList(findings) {
  const mine = findings.filter((f) => f.scope === "plan" || f.scope === "cell");
  if (!mine.length) return null;
  const box = el("div", "sparkscope-advisor");
  box.dataset.count = String(mine.length);
  for (const f of mine) {
    const item = markFinding(el("div", "sparkscope-advisor-item"), f);
    item.title = f.title;
    item.appendChild(el("span", `sparkscope-hint sparkscope-hint-${f.kind}`, f.label));
    const where = f.scope === "plan" ? `Query ${f.executionId} · ${f.nodeName}` : "this cell";
    item.appendChild(el("span", "sparkscope-advisor-where", where));
    if (f.fix) item.appendChild(fixButton(f));
    box.appendChild(item);
  }
  return box;
}

// ---- Jobs view: a row per job, its stage attempts when expanded

function jobsView(t, vs, now, act) {
  const list = el("div", "sparkscope-jobs");
  for (const job of t.jobs) {
    const stages = t.stages.filter((s) => s.appId === job.appId && job.stageIds.includes(s.stageId));
    const findings = t.findings.filter((f) => f.appId === job.appId && f.jobIds.includes(job.jobId));
    const cause = t.rootCauses.find((c) => c.appId === job.appId && c.jobId === job.jobId) || null;
    list.appendChild(jobRow(job, stages, findings, cause, t, vs, now, act));
  }
  const advisor = advisorList(t.findings);
  if (advisor) list.appendChild(advisor);
  return list;
}

function jobRow(job, stages, findings, cause, t, vs, now, act) {
  const key = jobKey(job);
  const node = el("div", "sparkscope-job");
  node.dataset.jobId = String(job.jobId);
  node.dataset.status = job.status;
  const cancelled = t.cancelledJobs.has(job.jobId);
  if (cancelled) node.dataset.cancelled = "true";
  const expanded = vs.expanded.has(key);
  node.classList.toggle("sparkscope-expanded", expanded);

  const row = el("div", "sparkscope-job-row");
  const expand = button("sparkscope-expand", expanded ? "▾" : "▸", `${expanded ? "Hide" : "Show"} ${plural(stages.length, "stage attempt")} of job ${job.jobId}`, () => {
    if (vs.expanded.has(key)) vs.expanded.delete(key);
    else vs.expanded.add(key);
    act.redraw();
  });
  expand.setAttribute("aria-expanded", expanded ? "true" : "false");
  row.appendChild(expand);
  const id = el("span", "sparkscope-job-id");
  const href = t.links.jobs[key];
  if (href) id.appendChild(link("sparkscope-job-link", `Job ${job.jobId}`, href, `Job ${job.jobId} in Spark's UI`));
  else id.textContent = `Job ${job.jobId}`;
  row.appendChild(id);
  const name = el("span", "sparkscope-job-name", job.label || "");
  name.title = job.description || "";
  row.appendChild(name);
  const tc = job.tasks;
  row.appendChild(bar({ total: tc.total, completed: tc.completed, skipped: tc.skipped, running: tc.active, failed: tc.failed }));
  row.appendChild(statusLabel("sparkscope-job-status", job.status));
  const dur = el("span", "sparkscope-job-duration");
  dur.dataset.start = String(job.submissionTimeMs || 0);
  if (job.completionTimeMs) dur.dataset.end = String(job.completionTimeMs);
  dur.textContent = job.submissionTimeMs ? fmtDuration((job.completionTimeMs || now) - job.submissionTimeMs) : "";
  row.appendChild(dur);
  const action = el("span", "sparkscope-job-action");
  if (job.status === "RUNNING") {
    action.appendChild(
      cancelButton("sparkscope-job-cancel", "Cancel", `Cancel job ${job.jobId} only`, t, vs, { target: "job", jobId: job.jobId, appId: job.appId }, act),
    );
  } else if (cancelled) {
    action.appendChild(el("span", "sparkscope-job-cancelled", "cancelled"));
  }
  row.appendChild(action);
  node.appendChild(row);

  const st = job.stages;
  const stageLine = [`${st.completed}/${job.stageIds.length} stages`];
  if (st.active) stageLine.push(`${st.active} active`);
  if (st.skipped) stageLine.push(`${st.skipped} skipped`);
  if (st.failed) stageLine.push(`${st.failed} failed`);
  if (tc.killed) stageLine.push(`${tc.killed} tasks killed`);
  const box = el("div", "sparkscope-stages");
  const summary = el("div", "sparkscope-stage-summary", stageLine.join(" · "));
  const sql = t.links.sql[key];
  if (sql) {
    summary.appendChild(document.createTextNode(" · "));
    summary.appendChild(link("sparkscope-sql-link", `SQL query ${job.sqlExecutionId}`, sql, `SQL execution ${job.sqlExecutionId} in Spark's UI`));
  }
  box.appendChild(summary);
  for (const s of stages) {
    const k = stageKey(s);
    const mine = findings.filter((f) => stageKey(f) === k);
    box.appendChild(stageRow(s, mine, t.links.stages[k], now, t.taskLists[k], act));
  }
  node.appendChild(box);

  // Some findings show on the job row too, so they are seen without opening it.
  const onRow = findings.filter((f) => f.jobLabel);
  if (onRow.length) {
    const line = el("div", "sparkscope-job-hints");
    for (const f of onRow) line.appendChild(hintBadge(f.kind, f.jobLabel, f.title));
    node.appendChild(line);
  }

  if (cause) node.appendChild(rootCauseBlock(cause, vs));
  else if (job.error) node.appendChild(el("div", "sparkscope-error", job.error));
  return node;
}

function rootCauseBlock(cause, vs) {
  const node = el("div", "sparkscope-root-cause");
  node.dataset.jobId = String(cause.jobId);
  node.setAttribute("role", "alert");
  const head = el("div", "sparkscope-root-cause-head");
  head.appendChild(el("span", "sparkscope-exception-class", cause.what));
  if (cause.message) head.appendChild(el("span", "sparkscope-exception-message", `: ${cause.message}`));
  node.appendChild(head);
  node.appendChild(el("div", "sparkscope-failure-where", cause.where));
  if (cause.stackTrace) {
    const key = `${stageKey(cause)}/${cause.taskId}`;
    const details = el("details", "sparkscope-trace");
    details.open = vs.traces.has(key);
    details.addEventListener("toggle", () => {
      if (details.open) vs.traces.add(key);
      else vs.traces.delete(key);
    });
    details.appendChild(el("summary", "sparkscope-trace-summary", "Stack trace"));
    details.appendChild(el("pre", "sparkscope-trace-text", cause.stackTrace));
    node.appendChild(details);
  }
  return node;
}

// "Is it stuck?" shows on a running stage this long after it started, and only once it has run
// STUCK_MEDIANS times its tasks' median (a stage whose tasks take long anyway is not stuck).
const STUCK_MIN_MS = 10_000;
const STUCK_MEDIANS = 5;
const DUMP_FRAMES_SHOWN = 12;

function stuckAt(s) {
  if (s.status !== "ACTIVE" || !s.activeTasks || !s.submissionTimeMs) return 0;
  const median = (s.taskDurations && s.taskDurations.medianMs) || 0;
  return s.submissionTimeMs + Math.max(STUCK_MIN_MS, STUCK_MEDIANS * median);
}

function stageRow(s, findings, href, now, list, act) {
  const node = el("div", "sparkscope-stage");
  node.dataset.stageId = String(s.stageId);
  node.dataset.attemptId = String(s.attemptId);
  node.dataset.status = s.status;
  const id = el("span", "sparkscope-stage-id");
  const label = `Stage ${s.stageId}${s.attemptId ? ` (attempt ${s.attemptId})` : ""}`;
  if (href) id.appendChild(link("sparkscope-stage-link", label, href, `${label} in Spark's UI`));
  else id.textContent = label;
  node.appendChild(id);
  const name = el("span", "sparkscope-stage-name", s.label || "");
  name.title = s.name;
  node.appendChild(name);
  const skipped = s.status === "SKIPPED" ? s.numTasks : 0;
  node.appendChild(bar({ total: s.numTasks, completed: s.completedTasks, skipped, running: s.activeTasks, failed: s.failedTasks }));
  node.appendChild(statusLabel("sparkscope-stage-status", s.status));
  const dur = el("span", "sparkscope-stage-duration");
  if (s.submissionTimeMs) {
    dur.dataset.start = String(s.submissionTimeMs);
    if (s.completionTimeMs) dur.dataset.end = String(s.completionTimeMs);
    dur.textContent = fmtDuration((s.completionTimeMs || now) - s.submissionTimeMs);
  }
  node.appendChild(dur);
  const hints = el("div", "sparkscope-stage-hints");
  const d = s.taskDurations;
  if (d) {
    hints.dataset.minMs = String(d.minMs);
    hints.dataset.medianMs = String(d.medianMs);
    hints.dataset.maxMs = String(d.maxMs);
    const t = el("span", "sparkscope-durations", `tasks ${fmtShort(d.minMs)} · ${fmtShort(d.medianMs)} · ${fmtShort(d.maxMs)}`);
    t.title = "Run time of the stage's successful tasks: shortest · median · longest";
    hints.appendChild(t);
  }
  for (const f of findings) {
    if (f.severity === "warning") {
      hints.appendChild(findingBadge(f));
      if (f.fix) hints.appendChild(fixButton(f));
    } else {
      const plain = markFinding(el("span", `sparkscope-${f.kind}`, f.label), f);
      plain.title = f.title;
      hints.appendChild(plain);
    }
  }
  const at = stuckAt(s);
  if (at) {
    const ask = button("sparkscope-link-button sparkscope-stuck", "Is it stuck?", "Where the stage's longest-running task is now: its thread dump, from Spark", () =>
      act.send({ kind: "tasks", appId: s.appId, stageId: s.stageId, attemptId: s.attemptId, threadDump: true }),
    );
    ask.dataset.stuckAt = String(at);
    ask.hidden = now < at;
    hints.appendChild(ask);
  }
  if (hints.childNodes.length) node.appendChild(hints);
  if (list && (list.status === "pending" || list.threadDump)) node.appendChild(threadDumpBlock(list));
  if (s.failureReason) node.appendChild(el("div", "sparkscope-error", s.failureReason));
  return node;
}

// The longest-running task's thread, as its executor saw it when asked.
function threadDumpBlock(list) {
  const node = el("div", "sparkscope-thread-dump");
  const d = list.threadDump;
  if (list.status === "pending" || !d) {
    node.dataset.status = "pending";
    node.textContent = "Asking Spark where the longest-running task is…";
    return node;
  }
  node.dataset.status = "done";
  if (!list.ok || d.error) {
    node.dataset.error = "true";
    node.textContent = `No thread dump: ${d.error || list.message || list.code}`;
    return node;
  }
  node.dataset.taskId = String(d.taskId);
  node.dataset.state = d.threadState;
  const head = `Task ${d.taskId} on executor ${d.executorId}, running ${fmtDuration(d.runningMs)}: ${d.threadState}`;
  node.appendChild(el("div", "sparkscope-thread-dump-head", head + (d.blockedBy ? `, waiting for ${d.blockedBy}` : "")));
  const frames = d.frames || [];
  const more = frames.length - DUMP_FRAMES_SHOWN + (d.moreFrames || 0);
  const text = frames.slice(0, DUMP_FRAMES_SHOWN).map((f) => `at ${f}`).join("\n");
  node.appendChild(el("pre", "sparkscope-thread-dump-frames", more > 0 ? `${text}\n… ${more} more` : text));
  return node;
}

// ---- Logs view: the driver's WARN and ERROR lines the agent tied to this cell's own work

const LOG_LINES_SHOWN = 4;

function logsView(logs, executorLogs) {
  const node = el("div", "sparkscope-logs-view");
  node.dataset.lines = String(logs.length);
  if (executorLogs.length) {
    // Each executor's own output, as its worker serves it (Spark's /executors executorLogs).
    const bar = el("div", "sparkscope-executor-logs", "Executor logs: ");
    const byExecutor = new Map();
    for (const e of executorLogs) {
      if (!byExecutor.has(e.executorId)) byExecutor.set(e.executorId, []);
      byExecutor.get(e.executorId).push(e);
    }
    for (const [id, entries] of byExecutor) {
      const group = el("span", "sparkscope-executor-log-group", `${id} `);
      for (const e of entries) {
        const a = link("sparkscope-executor-log", e.kind, e.url, `Executor ${id}'s ${e.kind}`);
        a.dataset.executorId = id;
        a.dataset.kind = e.kind;
        group.appendChild(a);
        group.appendChild(document.createTextNode(" "));
      }
      bar.appendChild(group);
    }
    node.appendChild(bar);
  }
  if (!logs.length) {
    node.appendChild(
      el("div", "sparkscope-muted", "No WARN or ERROR line of the driver's log is about this cell's jobs."),
    );
    return node;
  }
  for (const l of logs) {
    const row = el("div", "sparkscope-log-line");
    row.dataset.level = l.level || "WARN";
    row.dataset.seq = String(l.seq);
    if (l.jobId != null) row.dataset.jobId = String(l.jobId);
    if (l.stageId != null) row.dataset.stageId = String(l.stageId);
    const when = l.timeMs ? new Date(l.timeMs).toLocaleTimeString() : "";
    row.appendChild(el("span", "sparkscope-log-time", when));
    row.appendChild(el("span", "sparkscope-log-level", l.level || "WARN"));
    const where = [];
    if (l.jobId != null) where.push(`job ${l.jobId}`);
    if (l.stageId != null) where.push(`stage ${l.stageId}.${l.stageAttemptId || 0}`);
    if (where.length) row.appendChild(el("span", "sparkscope-log-where", where.join(" · ")));
    const logger = (l.logger || "").split(".").pop();
    if (logger) row.appendChild(el("span", "sparkscope-log-logger", logger));
    // A long message (Spark puts stack traces in some) shows its first lines; the rest folds.
    const text = (l.message || "").split("\n");
    row.appendChild(el("div", "sparkscope-log-message", text.slice(0, LOG_LINES_SHOWN).join("\n")));
    if (text.length > LOG_LINES_SHOWN) {
      const more = el("details", "sparkscope-log-more");
      more.appendChild(el("summary", "sparkscope-trace-summary", `${text.length - LOG_LINES_SHOWN} more lines`));
      more.appendChild(el("pre", "sparkscope-trace-text", text.slice(LOG_LINES_SHOWN).join("\n")));
      row.appendChild(more);
    }
    if (l.thrown) {
      const details = el("details", "sparkscope-log-thrown");
      details.appendChild(el("summary", "sparkscope-trace-summary", l.thrown.split("\n")[0]));
      details.appendChild(el("pre", "sparkscope-trace-text", l.thrown));
      row.appendChild(details);
    }
    node.appendChild(row);
  }
  return node;
}

// ---- Plan view: each SQL execution's physical plan, operators with their live metrics, each
// row coloured by the operator's share of the plan's time

// Characters of a node's detail shown; the whole of it on hover.
const PLAN_DETAIL_CHARS = 120;
// Indentation stops growing here (a deep plan stays readable).
const PLAN_MAX_INDENT = 24;

function planView(plans, dropped, findings, vs, now, act) {
  const node = el("div", "sparkscope-plan-view");
  node.dataset.executions = String(plans.length);
  if (!plans.length) {
    node.appendChild(el("div", "sparkscope-muted sparkscope-plan-empty", "This cell ran no SQL query (no DataFrame action or SQL statement) so far."));
    return node;
  }
  if (dropped) {
    const text = `${dropped} earlier ${dropped === 1 ? "query" : "queries"} of this cell not shown`;
    node.appendChild(el("div", "sparkscope-muted sparkscope-plan-dropped", text));
  }
  for (const p of plans) {
    const mine = findings.filter((f) => f.scope === "plan" && f.appId === p.appId && f.executionId === p.executionId);
    node.appendChild(planExecution(p, mine, vs, now, act));
  }
  return node;
}

function planExecution(p, findings, vs, now, act) {
  const key = `${p.appId}/${p.executionId}`;
  const open = !vs.plansClosed.has(key);
  const box = el("div", "sparkscope-plan-execution");
  box.dataset.executionId = String(p.executionId);
  box.dataset.status = p.status;
  box.dataset.planVersion = String(p.planVersion || 0);
  box.dataset.expanded = open ? "true" : "false";
  const head = el("div", "sparkscope-plan-head");
  const toggle = button("sparkscope-expand sparkscope-plan-toggle", open ? "▾" : "▸", `${open ? "Hide" : "Show"} the plan of query ${p.executionId}`, () => {
    if (vs.plansClosed.has(key)) vs.plansClosed.delete(key);
    else vs.plansClosed.add(key);
    act.redraw();
  });
  toggle.setAttribute("aria-expanded", open ? "true" : "false");
  head.appendChild(toggle);
  head.appendChild(el("span", "sparkscope-plan-id", `Query ${p.executionId}`));
  const label = el("span", "sparkscope-plan-label", p.label || "");
  label.title = p.description || p.label || "";
  head.appendChild(label);
  head.appendChild(el("span", `sparkscope-plan-status sparkscope-plan-status-${p.status}`, p.status));
  const dur = el("span", "sparkscope-plan-duration");
  if (p.startMs) {
    dur.dataset.start = String(p.startMs);
    if (p.endMs) dur.dataset.end = String(p.endMs);
    dur.textContent = fmtDuration((p.endMs || now) - p.startMs);
  }
  head.appendChild(dur);
  if (p.planLabel) {
    const aqe = el("span", "sparkscope-plan-aqe", p.planLabel);
    aqe.dataset.planVersion = String(p.planVersion);
    aqe.title = "Adaptive query execution changed the plan while it ran; this is the latest plan";
    head.appendChild(aqe);
  }
  box.appendChild(head);
  if (p.error) {
    const err = el("div", "sparkscope-error sparkscope-plan-error", p.error.split("\n")[0]);
    err.title = p.error;
    box.appendChild(err);
  }
  if (!open) return box;
  box.appendChild(planTree(p, findings, key, vs, act));
  if (p.moreNodes > 0) {
    const more = el("div", "sparkscope-muted sparkscope-plan-more", `… ${plural(p.moreNodes, "more node")}`);
    more.dataset.more = String(p.moreNodes);
    const why = [];
    if (p.nodesHidden) why.push(`${p.nodesHidden} past the ${p.nodes.length} shown`);
    if (p.nodesDropped) why.push(`${p.nodesDropped} left out by the listener (spark.sparkscope.plan.maxNodes)`);
    more.title = why.join("; ");
    box.appendChild(more);
  }
  return box;
}

function planTree(p, findings, key, vs, act) {
  const tree = el("div", "sparkscope-plan-tree");
  tree.setAttribute("role", "tree");
  const nodes = p.nodes || [];
  const parents = new Set(nodes.map((n) => n.parent));
  let foldedDepth = null; // inside a folded subtree: its root's depth
  for (const n of nodes) {
    if (foldedDepth !== null) {
      if (n.depth > foldedDepth) continue;
      foldedDepth = null;
    }
    const nodeKey = `${key}/${p.planVersion}/${n.index}`;
    const folded = vs.planNodesClosed.has(nodeKey);
    if (folded) foldedDepth = n.depth;
    const mine = findings.filter((f) => f.nodeIndex === n.index);
    tree.appendChild(planNode(n, parents.has(n.index), folded, nodeKey, p.totalTimeMs, mine, vs, act));
  }
  return tree;
}

function planNode(n, hasChildren, folded, nodeKey, totalMs, findings, vs, act) {
  const row = el("div", "sparkscope-plan-node");
  row.setAttribute("role", "treeitem");
  row.setAttribute("aria-level", String(n.depth + 1));
  row.dataset.nodeName = n.name;
  row.dataset.nodeIndex = String(n.index);
  row.dataset.depth = String(n.depth);
  const share = Number(n.share) || 0;
  row.dataset.share = String(share);
  if (n.rows !== null && n.rows !== undefined) row.dataset.rows = String(n.rows);
  if (n.top) {
    row.dataset.top = "true";
    row.classList.add("sparkscope-plan-top");
  }
  row.style.setProperty("--sparkscope-share", String(share));
  row.style.paddingLeft = `${4 + Math.min(n.depth, PLAN_MAX_INDENT) * 14}px`;
  const heat = el("div", "sparkscope-plan-heat");
  heat.style.width = `${pct(share, 1)}%`;
  row.appendChild(heat);

  const line = el("div", "sparkscope-plan-line");
  if (hasChildren) {
    const toggle = button("sparkscope-expand sparkscope-plan-node-toggle", folded ? "▸" : "▾", `${folded ? "Show" : "Hide"} what ${n.name} reads`, () => {
      if (vs.planNodesClosed.has(nodeKey)) vs.planNodesClosed.delete(nodeKey);
      else vs.planNodesClosed.add(nodeKey);
      act.redraw();
    });
    toggle.setAttribute("aria-expanded", folded ? "false" : "true");
    line.appendChild(toggle);
  } else {
    line.appendChild(el("span", "sparkscope-plan-leaf"));
  }
  line.appendChild(el("span", "sparkscope-plan-name", n.name));
  // Spark's one-line description mostly starts with the node's name: the rest says more.
  const detail = (n.detail || "").startsWith(n.name) ? n.detail.slice(n.name.length).trim() : (n.detail || "").trim();
  if (detail) {
    const shown = detail.length > PLAN_DETAIL_CHARS ? `${detail.slice(0, PLAN_DETAIL_CHARS - 1)}…` : detail;
    const d = el("span", "sparkscope-plan-detail", shown);
    d.title = n.detail;
    line.appendChild(d);
  }
  if (share > 0) {
    const s = el("span", "sparkscope-plan-share", `${Math.round(share * 100)}%`);
    s.title = `${fmtShort(n.timeMs)} of the plan's ${fmtShort(totalMs)} operator time (its own time metrics)`;
    line.appendChild(s);
  }
  if (n.top) line.appendChild(el("span", "sparkscope-plan-top-badge", "most time"));
  row.appendChild(line);
  if (findings.length) {
    row.dataset.findings = findings.map((f) => f.kind).join(" ");
    const box = el("div", "sparkscope-plan-findings");
    for (const f of findings) {
      box.appendChild(findingBadge(f));
      if (f.fix) box.appendChild(fixButton(f));
    }
    row.appendChild(box);
  }

  if ((n.metrics || []).length || (n.zeros || []).length) {
    const chips = el("div", "sparkscope-plan-metrics");
    for (const m of n.metrics) {
      const chip = el("span", "sparkscope-plan-metric", `${m.name}: ${m.text}`);
      chip.dataset.metricName = m.name;
      chip.dataset.metricType = m.type;
      if (m.value === null || m.value === undefined) chip.classList.add("sparkscope-plan-metric-empty");
      else chip.dataset.value = String(m.value);
      chips.appendChild(chip);
    }
    // Metrics that stayed 0 are counted, not shown (the kernel sends their names only).
    const zeros = n.zeros || [];
    if (zeros.length) {
      const z = el("span", "sparkscope-muted sparkscope-plan-zeros", `+${zeros.length} at 0`);
      z.title = zeros.join(", ");
      chips.appendChild(z);
    }
    row.appendChild(chips);
  }
  return row;
}

// ---- Tasks view: running tasks against the cores available, over the cell's run

function tasksView(jobs, samples, cluster, now) {
  const node = el("div", "sparkscope-tasks-view");
  node.setAttribute("role", "img");
  const W = 800;
  const H = 140;
  const pad = { l: 34, r: 8, t: 8, b: 18 };
  const starts = jobs.map((j) => j.submissionTimeMs).filter((t) => t);
  const t0 = Math.min(...(samples.length ? [samples[0][0]] : []), ...starts, now);
  const ends = jobs.map((j) => j.completionTimeMs || now);
  const running = jobs.some((j) => !j.completionTimeMs);
  const t1 = Math.max(t0 + 1000, ...(running ? [now] : ends), ...(samples.length ? [samples[samples.length - 1][0]] : []));
  const maxActive = Math.max(0, ...samples.map((s) => s[1]));
  const maxCores = Math.max(0, ...samples.map((s) => s[2]), cluster.cores || 0);
  const yMax = Math.max(1, maxActive, maxCores);
  node.dataset.samples = String(samples.length);
  node.dataset.maxActive = String(maxActive);
  node.dataset.lastActive = String(samples.length ? samples[samples.length - 1][1] : 0);
  node.dataset.cores = String(maxCores);
  node.setAttribute("aria-label", `Running tasks over time: at most ${maxActive} of ${maxCores} cores busy`);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / yMax) * (H - pad.t - pad.b);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "sparkscope-chart", preserveAspectRatio: "none" });
  svg.appendChild(svgEl("line", { x1: pad.l, y1: y(0), x2: W - pad.r, y2: y(0), class: "sparkscope-axis" }));
  for (const v of [yMax, Math.round(yMax / 2)]) {
    const label = svgEl("text", { x: pad.l - 4, y: y(v) + 4, class: "sparkscope-axis-label", "text-anchor": "end" });
    label.textContent = String(v);
    svg.appendChild(label);
  }
  if (samples.length) {
    // step paths: a value holds until the next sample, the last one until the end
    const step = (idx) => {
      let d = "";
      samples.forEach((s, i) => {
        const xs = x(Math.max(s[0], t0));
        d += i === 0 ? `M${xs},${y(s[idx])}` : `H${xs}V${y(s[idx])}`;
      });
      return d + `H${x(t1)}`;
    };
    const area = `${step(1)}V${y(0)}H${x(Math.max(samples[0][0], t0))}Z`;
    svg.appendChild(svgEl("path", { d: area, class: "sparkscope-active-area" }));
    svg.appendChild(svgEl("path", { d: step(2), class: "sparkscope-cores-line", fill: "none" }));
  }
  for (const j of jobs) {
    for (const [kind, t] of [
      ["start", j.submissionTimeMs],
      ["end", j.completionTimeMs],
    ]) {
      if (!t) continue;
      const m = svgEl("line", { x1: x(t), x2: x(t), y1: pad.t, y2: H - pad.b, class: `sparkscope-job-marker sparkscope-job-marker-${kind}` });
      m.dataset.jobId = String(j.jobId);
      m.dataset.kind = kind;
      const title = svgEl("title");
      title.textContent = `job ${j.jobId} ${kind === "start" ? "started" : "ended"}`;
      m.appendChild(title);
      svg.appendChild(m);
    }
  }
  const t0Label = svgEl("text", { x: pad.l, y: H - 4, class: "sparkscope-axis-label" });
  t0Label.textContent = "0 s";
  svg.appendChild(t0Label);
  const t1Label = svgEl("text", { x: W - pad.r, y: H - 4, class: "sparkscope-axis-label", "text-anchor": "end" });
  t1Label.textContent = fmtDuration(t1 - t0);
  svg.appendChild(t1Label);
  node.appendChild(svg);
  const legend = el("div", "sparkscope-legend");
  legend.appendChild(el("span", "sparkscope-legend-active", "running tasks"));
  legend.appendChild(el("span", "sparkscope-legend-cores", "cores"));
  legend.appendChild(el("span", "sparkscope-legend-marker", "job start / end"));
  if (!samples.length) legend.appendChild(el("span", "sparkscope-muted", " · no samples yet"));
  node.appendChild(legend);
  return node;
}

// ---- Timeline view: jobs and stages on a time axis; a stage's tasks in executor lanes

function timelineView(t, vs, now, act) {
  const { jobs, stages } = t;
  const node = el("div", "sparkscope-timeline");
  const mine = stages.filter((s) => jobs.some((j) => j.appId === s.appId && j.stageIds.includes(s.stageId)));
  const times = [...jobs.map((j) => j.submissionTimeMs), ...mine.map((s) => s.submissionTimeMs)].filter((x) => x);
  if (!times.length) {
    node.appendChild(el("div", "sparkscope-muted", "nothing has started yet"));
    return node;
  }
  const t0 = Math.min(...times);
  const ends = [...jobs.map((j) => j.completionTimeMs || now), ...mine.map((s) => s.completionTimeMs || (s.submissionTimeMs ? now : 0))];
  const t1 = Math.max(t0 + 100, ...ends);
  const pos = (a, b) => ({ left: pct(a - t0, t1 - t0), width: Math.max(pct(b - a, t1 - t0), 0.3) });
  const axis = el("div", "sparkscope-tl-axis");
  axis.appendChild(el("span", "", "0 s"));
  axis.appendChild(el("span", "", fmtDuration(t1 - t0)));
  node.appendChild(axis);
  for (const job of jobs) {
    node.appendChild(tlRow("sparkscope-tl-job", `Job ${job.jobId}`, job.status, job.submissionTimeMs, job.completionTimeMs, now, pos, { jobId: job.jobId }));
    const js = mine.filter((s) => s.appId === job.appId && job.stageIds.includes(s.stageId)).sort((a, b) => (a.submissionTimeMs || 0) - (b.submissionTimeMs || 0));
    for (const s of js) {
      if (!s.submissionTimeMs) continue; // skipped or pending: never ran
      const key = stageKey(s);
      const row = tlRow("sparkscope-tl-stage", `Stage ${s.stageId}${s.attemptId ? `.${s.attemptId}` : ""}`, s.status, s.submissionTimeMs, s.completionTimeMs, now, pos, { stageId: s.stageId, attemptId: s.attemptId });
      const open = vs.opened.has(key);
      const b = button("sparkscope-link-button sparkscope-tl-open", open ? "hide tasks" : "tasks", `${open ? "Hide" : "Show"} the tasks of stage ${s.stageId} (from Spark's REST API)`, () => {
        if (vs.opened.has(key)) {
          vs.opened.delete(key);
        } else {
          vs.opened.add(key);
          act.send({ kind: "tasks", appId: s.appId, stageId: s.stageId, attemptId: s.attemptId });
        }
        act.redraw();
      });
      b.setAttribute("aria-expanded", open ? "true" : "false");
      row.appendChild(b);
      node.appendChild(row);
      if (open) node.appendChild(taskLanes(s, t.taskLists[key], vs, now, act));
    }
  }
  return node;
}

function tlRow(cls, label, status, start, end, now, pos, data) {
  const row = el("div", `sparkscope-tl-row ${cls}`);
  row.dataset.status = status;
  for (const [k, v] of Object.entries(data)) row.dataset[k] = String(v);
  row.appendChild(el("span", "sparkscope-tl-label", label));
  const track = el("div", "sparkscope-tl-track");
  const b = el("div", `sparkscope-tl-bar sparkscope-tl-${String(status).toLowerCase()}`);
  const p = pos(start, end || now);
  b.style.left = `${p.left}%`;
  b.style.width = `${p.width}%`;
  b.dataset.start = String(start || 0);
  if (end) b.dataset.end = String(end);
  b.title = `${label}: ${status}, ${fmtDuration((end || now) - start)}`;
  track.appendChild(b);
  row.appendChild(track);
  return row;
}

function taskLanes(stage, list, vs, now, act) {
  const node = el("div", "sparkscope-tl-tasks");
  node.dataset.stageId = String(stage.stageId);
  node.dataset.attemptId = String(stage.attemptId);
  if (!list || list.status !== "done") {
    node.dataset.status = "pending";
    node.appendChild(el("div", "sparkscope-muted", "asking Spark for the stage's tasks…"));
    return node;
  }
  if (!list.ok) {
    node.dataset.status = "error";
    node.appendChild(el("div", "sparkscope-error", list.message || list.code || "the tasks could not be listed"));
    return node;
  }
  node.dataset.status = "done";
  const tasks = list.tasks || [];
  node.dataset.tasks = String(tasks.length);
  const start = Math.min(stage.submissionTimeMs || now, ...tasks.map((t) => t.launchTimeMs || now));
  const end = Math.max(stage.completionTimeMs || now, ...tasks.map((t) => (t.launchTimeMs || 0) + t.durationMs));
  const span = Math.max(end - start, 1);
  const lanes = new Map();
  for (const t of tasks) {
    const lane = `${t.executorId} · ${t.host}`;
    if (!lanes.has(lane)) lanes.set(lane, []);
    lanes.get(lane).push(t);
  }
  const shown = tasks.length < list.total ? ` (the ${tasks.length} longest or failed of ${list.total})` : "";
  node.appendChild(el("div", "sparkscope-tl-tasks-head", `${plural(tasks.length, "task")} by executor${shown}`));
  const key = stageKey(stage);
  for (const [lane, ts] of [...lanes.entries()].sort()) {
    const row = el("div", "sparkscope-tl-row sparkscope-tl-lane");
    row.dataset.executor = ts[0].executorId;
    row.appendChild(el("span", "sparkscope-tl-label", `executor ${lane}`));
    const track = el("div", "sparkscope-tl-track");
    for (const t of ts) track.appendChild(taskBar(t, key, start, span, vs, act));
    row.appendChild(track);
    node.appendChild(row);
  }
  const legend = el("div", "sparkscope-legend");
  for (const [, cls, label] of PHASES) legend.appendChild(el("span", `sparkscope-legend-phase sparkscope-phase-${cls}`, label));
  node.appendChild(legend);
  if (vs.popup && vs.popup.stage === key) {
    const t = tasks.find((x) => x.taskId === vs.popup.taskId);
    if (t) node.appendChild(taskPopup(t, vs, act));
  }
  return node;
}

function taskBar(t, key, start, span, vs, act) {
  const b = el("button", `sparkscope-tl-task sparkscope-tl-task-${String(t.status).toLowerCase()}`);
  b.type = "button";
  b.dataset.taskId = String(t.taskId);
  b.dataset.status = t.status;
  b.style.left = `${pct((t.launchTimeMs || start) - start, span)}%`;
  b.style.width = `${Math.max(pct(t.durationMs, span), 0.4)}%`;
  const label = `task ${t.index} (attempt ${t.attempt}), ${t.status}, ${fmtShort(t.durationMs)}`;
  b.title = label;
  b.setAttribute("aria-label", label);
  const total = Math.max(t.durationMs, 1);
  for (const [field, cls] of PHASES) {
    const v = t[field] || 0;
    if (v <= 0) continue;
    const seg = el("span", `sparkscope-phase sparkscope-phase-${cls}`);
    seg.style.width = `${pct(v, total)}%`;
    b.appendChild(seg);
  }
  b.addEventListener("click", (ev) => {
    ev.stopPropagation();
    vs.popup = { stage: key, taskId: t.taskId };
    act.redraw();
  });
  return b;
}

function taskPopup(t, vs, act) {
  const node = el("div", "sparkscope-task-popup");
  node.setAttribute("role", "dialog");
  node.setAttribute("aria-label", `Task ${t.index} details`);
  node.dataset.taskId = String(t.taskId);
  node.appendChild(
    button("sparkscope-link-button sparkscope-popup-close", "×", "Close the task's details", () => {
      vs.popup = null;
      act.redraw();
    }),
  );
  const rows = [
    ["task", `${t.index} (attempt ${t.attempt}, id ${t.taskId})${t.speculative ? ", speculative" : ""}`],
    ["status", t.status],
    ["executor", `${t.executorId} on ${t.host}`],
    ["duration", fmtShort(t.durationMs)],
    ["GC", fmtShort(t.gcMs)],
    ...PHASES.map(([field, , label]) => [label, fmtShort(t[field] || 0)]),
  ];
  const table = el("table", "sparkscope-popup-table");
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.appendChild(el("th", "", k));
    tr.appendChild(el("td", "", v));
    table.appendChild(tr);
  }
  node.appendChild(table);
  if (t.error) node.appendChild(el("pre", "sparkscope-task-error", t.error));
  return node;
}

// Live durations between model updates: only text, not a render (data-updated-at stays).
function tick(root, overview, now) {
  for (const d of root.querySelectorAll(".sparkscope-job-duration, .sparkscope-stage-duration, .sparkscope-plan-duration")) {
    if (d.dataset.start && d.dataset.start !== "0" && !d.dataset.end) {
      d.textContent = fmtDuration(now - Number(d.dataset.start));
    }
  }
  const summary = root.querySelector(".sparkscope-summary");
  if (summary) summary.textContent = summaryText(overview, now);
  for (const b of root.querySelectorAll(".sparkscope-stuck[hidden]")) {
    if (now >= Number(b.dataset.stuckAt)) b.hidden = false;
  }
}

function render({ model, el: host }) {
  const root = el("div", "sparkscope-cell");
  host.appendChild(root);
  let pending = false;
  let timer = null;

  const stopTimer = () => {
    if (timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  };
  const onTick = () => {
    const vs = stateFor(model.get("tag") || "");
    tick(root, model.get("overview") || {}, serverNow(vs));
  };
  const draw = () => {
    pending = false;
    const t = readTraits(model);
    drawCell(root, t, stateFor(t.tag), act);
    if (!t.hidden && t.state === "running") {
      if (timer === null) timer = setInterval(onTick, 1000);
    } else {
      stopTimer();
    }
  };
  // Several traits change per comm message: draw once after all of them.
  const schedule = () => {
    if (!pending) {
      pending = true;
      queueMicrotask(draw);
    }
  };
  const act = {
    redraw: draw,
    schedule,
    send: (msg) => model.send(msg),
    setView: (v) => {
      model.set("view", v);
      model.save_changes();
      draw();
    },
  };
  for (const name of TRAITS) model.on(`change:${name}`, schedule);
  draw();

  return () => {
    for (const name of TRAITS) model.off(`change:${name}`, schedule);
    stopTimer();
  };
}

export default { render };
