// sparkscope cell widget: the Spark jobs of one notebook cell run, drawn from the model's synced
// traits (see sparkscope/widget.py for their names). Plain ESM, no build step.
//
// DOM contract (tests read it): root .sparkscope-cell[data-tag][data-state][data-updated-at]
// [data-last-stage-completion-ms][data-last-stage-seen-at]; .sparkscope-job[data-job-id]
// [data-status] containing .sparkscope-bar[data-completed|running|failed|skipped|total] and
// .sparkscope-job-status; .sparkscope-summary; .sparkscope-stage[data-stage-id][data-attempt-id]
// [data-status]. Cancel: button .sparkscope-cancel (the whole cell run, while it runs) and
// .sparkscope-job-cancel inside each running .sparkscope-job (both [data-unavailable] when the
// kernel has no agent connection); the outcome in .sparkscope-cancel-result[data-status]
// (sent|pending|done)[data-ok][data-code][data-target][data-job-id]; data-state `cancelled`
// once a cancelled cell run has ended; .sparkscope-job[data-cancelled] for jobs cancelled alone.
// Gaps the numbers went through: .sparkscope-notice.sparkscope-notice-<kind> (role=status).

// Per cell run (by tag), shared by every view of it: a re-rendered output keeps the user's
// expand/collapse choices and the time a stage completion was first shown.
const VIEW_STATE = new Map();

function stateFor(tag) {
  let s = VIEW_STATE.get(tag);
  if (!s) {
    s = {
      expanded: new Set(), // job keys with their stages shown
      collapsed: null, // null: follow data-state; true/false: the user's choice
      lastStageMs: null,
      lastStageSeenAt: null,
      serverMs: 0,
      serverSeenAt: 0,
      sent: null, // the last cancel request this page sent: {requestId, target, jobId, at}
    };
    VIEW_STATE.set(tag, s);
  }
  return s;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtDuration(ms) {
  const s = Math.max(ms, 0) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

const JOB_ORDER = ["RUNNING", "SUCCEEDED", "FAILED", "UNKNOWN"];
const STATES = ["running", "done", "cancelled"];
// After this long without the kernel taking a cancel request, say why it may not.
const KERNEL_SILENT_MS = 3000;

function requestId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function summaryText(jobs, nowMs) {
  if (!jobs.length) return "no Spark jobs";
  const counts = {};
  for (const j of jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  const statuses = Object.keys(counts)
    .sort((a, b) => rank(a) - rank(b))
    .map((s) => `${counts[s]} ${s.toLowerCase()}`)
    .join(", ");
  const t = { total: 0, active: 0, completed: 0, skipped: 0, failed: 0 };
  for (const j of jobs) for (const k of Object.keys(t)) t[k] += j.tasks[k] || 0;
  const extra = [];
  if (t.active) extra.push(`${t.active} running`);
  if (t.skipped) extra.push(`${t.skipped} skipped`);
  if (t.failed) extra.push(`${t.failed} failed`);
  const tasks = `${t.completed}/${t.total} tasks${extra.length ? ` (${extra.join(", ")})` : ""}`;
  return `${plural(jobs.length, "job")} (${statuses}) · ${tasks} · ${fmtDuration(elapsed(jobs, nowMs))}`;
}

function rank(status) {
  const i = JOB_ORDER.indexOf(status);
  return i < 0 ? JOB_ORDER.length : i;
}

function elapsed(jobs, nowMs) {
  const starts = jobs.map((j) => j.submissionTimeMs).filter((t) => t);
  if (!starts.length) return 0;
  const ends = jobs.map((j) => j.completionTimeMs || nowMs);
  return Math.max(...ends) - Math.min(...starts);
}

function pct(n, total) {
  return total > 0 ? Math.max(0, Math.min(100, (100 * n) / total)) : 0;
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

function jobKey(job) {
  return `${job.appId}/${job.jobId}`;
}

function render({ model, el: host }) {
  const root = el("div", "sparkscope-cell");
  host.appendChild(root);
  let pending = false;
  let timer = null;

  const serverNow = (vs) => (vs.serverMs ? vs.serverMs + (Date.now() - vs.serverSeenAt) : Date.now());

  function noteServerTime(vs) {
    const ms = model.get("server_time_ms") || 0;
    if (ms !== vs.serverMs) {
      vs.serverMs = ms;
      vs.serverSeenAt = Date.now();
    }
  }

  function draw() {
    pending = false;
    const tag = model.get("tag") || "";
    const vs = stateFor(tag);
    noteServerTime(vs);
    const jobs = model.get("jobs") || [];
    const stages = model.get("stages") || [];
    const state = STATES.includes(model.get("state")) ? model.get("state") : "running";
    const collapsed = vs.collapsed === null ? state !== "running" : vs.collapsed;
    const cancelled = new Set(model.get("cancelled_jobs") || []);
    const agentError = model.get("agent_error") || "";
    const now = serverNow(vs);

    // stage-completion latency probe: newest completion (Spark's clock) and when we first drew it
    let lastStage = null;
    for (const s of stages) {
      if (s.status === "COMPLETE" && s.completionTimeMs && (lastStage === null || s.completionTimeMs > lastStage)) {
        lastStage = s.completionTimeMs;
      }
    }
    if (lastStage !== null && lastStage !== vs.lastStageMs) {
      vs.lastStageMs = lastStage;
      vs.lastStageSeenAt = Date.now();
    }

    root.replaceChildren();
    root.dataset.tag = tag;
    root.dataset.state = state;
    root.classList.toggle("sparkscope-collapsed", collapsed);
    root.classList.toggle("sparkscope-has-failed", jobs.some((j) => j.status === "FAILED"));
    if (vs.lastStageMs !== null) {
      root.dataset.lastStageCompletionMs = String(vs.lastStageMs);
      root.dataset.lastStageSeenAt = String(vs.lastStageSeenAt);
    }

    const header = el("div", "sparkscope-header");
    header.appendChild(el("span", "sparkscope-toggle", collapsed ? "▸" : "▾"));
    header.appendChild(el("span", "sparkscope-title", "Spark"));
    header.appendChild(el("span", "sparkscope-summary", summaryText(jobs, now)));
    if (state === "cancelled") header.appendChild(el("span", "sparkscope-badge", "cancelled"));
    if (state === "running") {
      header.appendChild(cancelButton("sparkscope-cancel", "Cancel", "Cancel this cell's Spark work (every operation it started)", agentError, { target: "cell" }));
    }
    header.title = collapsed ? "Show the jobs" : "Hide the jobs";
    header.addEventListener("click", () => {
      vs.collapsed = !collapsed;
      draw();
    });
    root.appendChild(header);

    const result = cancelResult(vs);
    if (result) root.appendChild(result);
    // Gaps the numbers went through: said, never hidden (a reconnect, drops, corrections).
    for (const n of model.get("notices") || []) {
      const line = el("div", `sparkscope-notice sparkscope-notice-${n.kind || "unspecified"}`, n.message || "");
      line.setAttribute("role", "status");
      root.appendChild(line);
    }

    const list = el("div", "sparkscope-jobs");
    for (const job of jobs) list.appendChild(jobRow(job, stages, vs, now, cancelled, agentError));
    root.appendChild(list);
    root.dataset.updatedAt = String(Date.now());

    if (state === "running" && timer === null) {
      timer = setInterval(tick, 1000);
    } else if (state !== "running" && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  // A Cancel button: sends {kind: "cancel", target, jobId?, appId?, requestId} to the kernel.
  function cancelButton(cls, label, title, agentError, request) {
    const vs = stateFor(model.get("tag") || "");
    const button = el("button", `sparkscope-button ${cls}`, label);
    button.type = "button";
    button.title = agentError ? `${title}. Not possible now: ${agentError}` : title;
    if (agentError) {
      button.dataset.unavailable = "true";
      if (request.target === "cell") button.textContent = `${label} (no agent)`;
    }
    const inFlight = vs.sent && !settled(vs) && sameTarget(vs.sent, request);
    const stopping = request.target === "job" && (model.get("cancelled_jobs") || []).includes(request.jobId);
    if (inFlight || stopping) {
      button.disabled = true;
      button.textContent = "Cancelling…";
    }
    button.addEventListener("click", (ev) => {
      ev.stopPropagation(); // the header's click folds the widget
      const sent = { requestId: requestId(), ...request, at: Date.now() };
      vs.sent = sent;
      model.send({ kind: "cancel", requestId: sent.requestId, target: sent.target, jobId: sent.jobId, appId: sent.appId });
      setTimeout(schedule, KERNEL_SILENT_MS + 50); // to say so if the kernel stays silent
      draw();
    });
    return button;
  }

  function sameTarget(a, b) {
    return a.target === b.target && (a.target === "cell" || (a.jobId === b.jobId && a.appId === b.appId));
  }

  // The kernel's answer to the last request from this page (or from any page: the trait), done.
  function settled(vs) {
    const c = model.get("cancel") || {};
    return !vs.sent || (c.requestId === vs.sent.requestId && c.status === "done");
  }

  // What the latest cancel request came to: sent (the kernel has not taken it yet), pending (the
  // kernel asked the agent) or done (the agent's answer, or why there was none).
  function cancelResult(vs) {
    const c = model.get("cancel") || {};
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

  function jobRow(job, stages, vs, now, cancelled, agentError) {
    const key = jobKey(job);
    const node = el("div", "sparkscope-job");
    node.dataset.jobId = String(job.jobId);
    node.dataset.status = job.status;
    if (cancelled.has(job.jobId)) node.dataset.cancelled = "true";
    const expanded = vs.expanded.has(key);
    node.classList.toggle("sparkscope-expanded", expanded);

    const mine = stages
      .filter((s) => s.appId === job.appId && job.stageIds.includes(s.stageId))
      .sort((a, b) => a.stageId - b.stageId || a.attemptId - b.attemptId);

    const row = el("div", "sparkscope-job-row");
    const expand = el("button", "sparkscope-expand", expanded ? "▾" : "▸");
    expand.type = "button";
    expand.title = `${expanded ? "Hide" : "Show"} ${plural(mine.length, "stage attempt")}`;
    expand.addEventListener("click", (ev) => {
      ev.stopPropagation();
      if (vs.expanded.has(key)) vs.expanded.delete(key);
      else vs.expanded.add(key);
      draw();
    });
    row.appendChild(expand);
    row.appendChild(el("span", "sparkscope-job-id", `Job ${job.jobId}`));
    const name = el("span", "sparkscope-job-name", job.label || "");
    name.title = [job.description, job.operationId && `operation ${job.operationId}`]
      .filter(Boolean)
      .join("\n");
    row.appendChild(name);
    const t = job.tasks;
    row.appendChild(
      bar({ total: t.total, completed: t.completed, skipped: t.skipped, running: t.active, failed: t.failed }),
    );
    row.appendChild(el("span", "sparkscope-job-status", job.status));
    const dur = el("span", "sparkscope-job-duration");
    dur.dataset.start = String(job.submissionTimeMs || 0);
    if (job.completionTimeMs) dur.dataset.end = String(job.completionTimeMs);
    dur.textContent = job.submissionTimeMs ? fmtDuration((job.completionTimeMs || now) - job.submissionTimeMs) : "";
    row.appendChild(dur);
    const action = el("span", "sparkscope-job-action");
    if (job.status === "RUNNING") {
      action.appendChild(
        cancelButton("sparkscope-job-cancel", "Cancel", `Cancel job ${job.jobId} only`, agentError, {
          target: "job",
          jobId: job.jobId,
          appId: job.appId,
        }),
      );
    } else if (cancelled.has(job.jobId)) {
      action.appendChild(el("span", "sparkscope-job-cancelled", "cancelled"));
    }
    row.appendChild(action);
    node.appendChild(row);

    const st = job.stages;
    const stageLine = [`${st.completed}/${job.stageIds.length} stages`];
    if (st.active) stageLine.push(`${st.active} active`);
    if (st.skipped) stageLine.push(`${st.skipped} skipped`);
    if (st.failed) stageLine.push(`${st.failed} failed`);
    if (t.killed) stageLine.push(`${t.killed} tasks killed`);
    const box = el("div", "sparkscope-stages");
    box.appendChild(el("div", "sparkscope-stage-summary", stageLine.join(" · ")));
    for (const s of mine) box.appendChild(stageRow(s, now));
    node.appendChild(box);

    if (job.error) node.appendChild(el("div", "sparkscope-error", job.error));
    return node;
  }

  function stageRow(s, now) {
    const node = el("div", "sparkscope-stage");
    node.dataset.stageId = String(s.stageId);
    node.dataset.attemptId = String(s.attemptId);
    node.dataset.status = s.status;
    node.appendChild(
      el("span", "sparkscope-stage-id", `Stage ${s.stageId}${s.attemptId ? ` (attempt ${s.attemptId})` : ""}`),
    );
    // Connect stages carry their job's truncated request text as name: not worth a column
    const name = el("span", "sparkscope-stage-name", s.name.startsWith("Spark Connect - ") ? "" : s.name);
    name.title = s.name;
    node.appendChild(name);
    const skipped = s.status === "SKIPPED" ? s.numTasks : 0;
    node.appendChild(
      bar({ total: s.numTasks, completed: s.completedTasks, skipped, running: s.activeTasks, failed: s.failedTasks }),
    );
    node.appendChild(el("span", "sparkscope-stage-status", s.status));
    const dur = el("span", "sparkscope-stage-duration");
    if (s.submissionTimeMs) {
      dur.dataset.start = String(s.submissionTimeMs);
      if (s.completionTimeMs) dur.dataset.end = String(s.completionTimeMs);
      dur.textContent = fmtDuration((s.completionTimeMs || now) - s.submissionTimeMs);
    }
    node.appendChild(dur);
    if (s.failureReason) {
      const why = el("div", "sparkscope-error", s.failureReason);
      node.appendChild(why);
    }
    return node;
  }

  // Live durations between model updates: only text, not a render (data-updated-at stays).
  function tick() {
    const vs = stateFor(model.get("tag") || "");
    const now = serverNow(vs);
    for (const d of root.querySelectorAll(".sparkscope-job-duration, .sparkscope-stage-duration")) {
      if (d.dataset.start && d.dataset.start !== "0" && !d.dataset.end) {
        d.textContent = fmtDuration(now - Number(d.dataset.start));
      }
    }
    const summary = root.querySelector(".sparkscope-summary");
    if (summary) summary.textContent = summaryText(model.get("jobs") || [], now);
  }

  // Several traits change per comm message: draw once after all of them.
  const schedule = () => {
    if (!pending) {
      pending = true;
      queueMicrotask(draw);
    }
  };
  const traits = ["tag", "state", "cell_done", "jobs", "stages", "server_time_ms", "cancel", "cancelled_jobs", "agent_error", "notices"];
  for (const name of traits) model.on(`change:${name}`, schedule);
  draw();

  return () => {
    for (const name of traits) model.off(`change:${name}`, schedule);
    if (timer !== null) clearInterval(timer);
  };
}

export default { render };
