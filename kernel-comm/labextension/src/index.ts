// sparkscope in JupyterLab: the user's Spark work across all their notebooks, in a "Spark"
// sidebar (the Connect servers their sessions use, every running cell run with Cancel, the
// recently finished ones) and in the status bar (the active notebook's work now). Everything
// comes from the Jupyter server extension (sparkscope/labserver.py), which holds the user's
// credential for the agent: no token reaches the browser.

import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

// ---- what the server extension answers (the agent's MyWork, proto3 JSON with defaults filled)

interface Cluster {
  executors: number;
  totalCores: number;
  activeTasks: number;
}

interface Application {
  id: string;
  name: string;
  sparkVersion: string;
  master: string;
  live: boolean;
  endTimeMs: number | null;
  uiLink: string;
  cluster: Cluster;
}

interface CellRun {
  appId: string;
  sessionId: string;
  userId: string;
  tag: string;
  notebook: string;
  cellId: string;
  executionCount: number;
  state: string; // running | succeeded | failed | cancelled | unknown
  startTimeMs: number;
  endTimeMs: number | null;
  jobs: number;
  jobsRunning: number;
  jobsFailed: number;
  tasksTotal: number;
  tasksCompleted: number;
  tasksActive: number;
  tasksFailed: number;
  error: string | null;
  operationIds: string[];
}

interface Work {
  ok: boolean;
  code: string;
  message: string;
  applications: Application[];
  runs: CellRun[];
  moreFinished: number;
}

const sparkIcon = new LabIcon({
  name: 'sparkscope:spark',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
    '<path class="jp-icon3" fill="#616161" d="M12 2l2.2 6.6L21 9l-5.4 4.1L17.6 20 12 16.1 ' +
    '6.4 20l2-6.9L3 9l6.8-.4z"/></svg>'
});

const POLL_MS = 1000; // while the page is visible
const POLL_HIDDEN_MS = 5000;

// ---- the poll: one request at a time, shared by the sidebar and the status bar

class WorkModel {
  work: Work | null = null;
  error = '';
  private listeners: Array<() => void> = [];
  private timer: number | null = null;
  private readonly settings = ServerConnection.makeSettings();

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  start(): void {
    void this.tick();
  }

  async refresh(): Promise<void> {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    await this.tick();
  }

  private async tick(): Promise<void> {
    try {
      const url = URLExt.join(this.settings.baseUrl, 'sparkscope/api/work');
      const resp = await ServerConnection.makeRequest(url, {}, this.settings);
      if (!resp.ok) {
        this.error = `the Jupyter server answered ${resp.status}`;
      } else {
        this.work = (await resp.json()) as Work;
        this.error = this.work.ok ? '' : this.work.message || this.work.code;
      }
    } catch (e) {
      this.error = `cannot reach the Jupyter server: ${e}`;
    }
    for (const fn of this.listeners) {
      fn();
    }
    const wait = document.visibilityState === 'visible' ? POLL_MS : POLL_HIDDEN_MS;
    this.timer = window.setTimeout(() => void this.tick(), wait);
  }

  async cancel(run: CellRun): Promise<{ ok: boolean; message: string }> {
    const url = URLExt.join(this.settings.baseUrl, 'sparkscope/api/cancel');
    const body: Record<string, string> = {
      appId: run.appId,
      sessionId: run.sessionId,
      userId: run.userId
    };
    if (run.tag) {
      body.tag = run.tag;
    } else if (run.operationIds.length) {
      body.operationId = run.operationIds[0];
    }
    try {
      const resp = await ServerConnection.makeRequest(
        url,
        { method: 'POST', body: JSON.stringify(body) },
        this.settings
      );
      const result = await resp.json();
      return { ok: !!result.ok, message: String(result.message || '') };
    } catch (e) {
      return { ok: false, message: String(e) };
    } finally {
      void this.refresh();
    }
  }
}

// ---- small DOM helpers

function el(tag: string, cls: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = cls;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) {
    return `${s} s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min ${s % 60} s`;
  }
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function basename(path: string): string {
  return path.split('/').pop() || path;
}

function cellName(run: CellRun): string {
  if (!run.notebook) {
    return run.tag ? `session ${run.sessionId.slice(0, 8)}` : `operation ${run.operationIds[0] || ''}`;
  }
  const count = run.executionCount ? ` [${run.executionCount}]` : '';
  return `${basename(run.notebook)} · cell${count}`;
}

function safeLink(url: string, user: string): string {
  const filled = url.split('{user}').join(encodeURIComponent(user));
  return /^https?:\/\//i.test(filled) ? filled : '';
}

// ---- the sidebar

class SparkPanel extends Widget {
  private readonly status = new Map<string, string>(); // tag or operation → cancel outcome

  constructor(
    private readonly model: WorkModel,
    private readonly open: (path: string) => void
  ) {
    super();
    this.id = 'sparkscope-sidebar';
    this.addClass('sparkscope-sidebar');
    this.title.caption = 'Spark: your work across notebooks';
    this.title.icon = sparkIcon;
    model.onChange(() => this.draw());
    this.draw();
  }

  private draw(): void {
    const root = this.node;
    root.replaceChildren();
    root.appendChild(el('h2', 'sparkscope-sb-title', 'Spark'));
    const work = this.model.work;
    if (this.model.error) {
      const e = el('div', 'sparkscope-sb-error', this.model.error);
      e.setAttribute('role', 'status');
      root.appendChild(e);
    }
    if (!work) {
      root.appendChild(el('div', 'sparkscope-sb-muted', 'asking the agent…'));
      return;
    }
    const users = new Map<string, string>();
    for (const r of work.runs) {
      users.set(r.appId, r.userId);
    }

    root.appendChild(el('h3', 'sparkscope-sb-heading', 'Spark Connect servers'));
    if (!work.applications.length) {
      root.appendChild(el('div', 'sparkscope-sb-muted', 'none of your sessions yet'));
    }
    for (const a of work.applications) {
      const box = el('div', 'sparkscope-sb-app');
      box.dataset.appId = a.id;
      const state = a.endTimeMs ? 'ended' : a.live ? 'live' : 'no listener connected';
      box.dataset.state = state;
      box.appendChild(el('div', 'sparkscope-sb-app-name', a.name || a.id));
      const c = a.cluster;
      box.appendChild(
        el(
          'div',
          'sparkscope-sb-app-detail',
          `${state} · Spark ${a.sparkVersion || '?'} · ${a.master || '?'} · ` +
            `${c.executors} executor(s), ${c.totalCores} cores, ${c.activeTasks} tasks running`
        )
      );
      const link = safeLink(a.uiLink || '', users.get(a.id) || '');
      if (link) {
        const ui = el('a', 'sparkscope-sb-ui-link', 'Spark UI ↗') as HTMLAnchorElement;
        ui.href = link;
        ui.target = '_blank';
        ui.rel = 'noopener noreferrer';
        box.appendChild(ui);
      }
      root.appendChild(box);
    }

    const running = work.runs.filter(r => r.state === 'running');
    const done = work.runs.filter(r => r.state !== 'running');
    root.appendChild(el('h3', 'sparkscope-sb-heading', `Running (${running.length})`));
    if (!running.length) {
      root.appendChild(el('div', 'sparkscope-sb-muted', 'nothing running'));
    }
    for (const r of running) {
      root.appendChild(this.row(r, true));
    }
    root.appendChild(el('h3', 'sparkscope-sb-heading', 'Recently finished'));
    if (!done.length) {
      root.appendChild(el('div', 'sparkscope-sb-muted', 'nothing yet'));
    }
    for (const r of done) {
      root.appendChild(this.row(r, false));
    }
    if (work.moreFinished > 0) {
      root.appendChild(el('div', 'sparkscope-sb-muted', `and ${work.moreFinished} older`));
    }
  }

  private row(r: CellRun, running: boolean): HTMLElement {
    const key = r.tag || r.operationIds[0] || '';
    const row = el('div', 'sparkscope-sb-run');
    Object.assign(row.dataset, {
      state: r.state,
      notebook: r.notebook,
      cellId: r.cellId,
      tag: r.tag,
      user: r.userId,
      appId: r.appId,
      tasksTotal: String(r.tasksTotal),
      tasksCompleted: String(r.tasksCompleted)
    });
    const name = el('button', 'sparkscope-sb-run-name', cellName(r));
    name.title = r.notebook ? `open ${r.notebook}` : r.sessionId;
    name.addEventListener('click', () => r.notebook && this.open(r.notebook));
    row.appendChild(name);
    const end = r.endTimeMs || Date.now();
    const tasks = r.tasksTotal
      ? `${r.tasksCompleted}/${r.tasksTotal} tasks` + (running && r.tasksActive ? ` (${r.tasksActive} running)` : '')
      : 'no tasks yet';
    row.appendChild(
      el(
        'div',
        'sparkscope-sb-run-detail',
        `${running ? 'running' : r.state} · ${r.jobs} job(s) · ${tasks} · ${duration(
          end - r.startTimeMs
        )}`
      )
    );
    if (running && r.tasksTotal > 0) {
      const bar = el('div', 'sparkscope-sb-progress');
      const share = (n: number) => `${Math.min(100, (100 * n) / r.tasksTotal)}%`;
      const fill = el('div', 'sparkscope-sb-progress-fill');
      fill.style.width = share(r.tasksCompleted);
      const active = el('div', 'sparkscope-sb-progress-active');
      active.style.width = share(r.tasksActive);
      bar.append(fill, active);
      row.appendChild(bar);
    }
    if (r.error && r.state === 'failed') {
      row.appendChild(el('div', 'sparkscope-sb-run-error', r.error.split('\n')[0]));
    }
    if (running) {
      const cancel = el('button', 'sparkscope-sb-cancel jp-mod-styled', 'Cancel') as HTMLButtonElement;
      cancel.title = 'Stop this cell run’s Spark work';
      cancel.addEventListener('click', async () => {
        cancel.disabled = true;
        this.status.set(key, 'cancelling…');
        this.draw();
        const result = await this.model.cancel(r);
        this.status.set(key, result.ok ? 'cancelled' : `not cancelled: ${result.message}`);
        this.draw();
      });
      row.appendChild(cancel);
    }
    const said = this.status.get(key);
    if (said) {
      const s = el('div', 'sparkscope-sb-cancel-result', said);
      s.setAttribute('role', 'status');
      row.appendChild(s);
    }
    return row;
  }
}

// ---- the status bar: the active notebook's Spark work now

class SparkStatus extends Widget {
  constructor(
    private readonly model: WorkModel,
    private readonly tracker: INotebookTracker,
    onClick: () => void
  ) {
    super();
    this.id = 'sparkscope-status';
    this.addClass('sparkscope-status');
    this.node.title = 'Spark work of this notebook; click for all of yours';
    this.node.addEventListener('click', onClick);
    model.onChange(() => this.draw());
    tracker.currentChanged.connect(() => this.draw());
    this.draw();
  }

  draw(): void {
    const panel: NotebookPanel | null = this.tracker.currentWidget;
    const path = panel ? panel.context.path : '';
    const runs = (this.model.work?.runs || []).filter(
      r => r.state === 'running' && path !== '' && r.notebook === path
    );
    let queued = 0;
    if (panel && panel.content) {
      for (const cell of panel.content.widgets) {
        const m = cell.model as unknown as { executionState?: string };
        if (cell.model.type === 'code' && m.executionState === 'running') {
          queued += 1;
        }
      }
    }
    queued = Math.max(0, queued - 1); // the one executing is not queued
    const jobs = runs.reduce((n, r) => n + r.jobsRunning, 0);
    const done = runs.reduce((n, r) => n + r.tasksCompleted, 0);
    const total = runs.reduce((n, r) => n + r.tasksTotal, 0);
    const state = runs.length ? 'running' : 'idle';
    Object.assign(this.node.dataset, {
      state,
      jobs: String(jobs),
      tasksCompleted: String(done),
      tasksTotal: String(total),
      queued: String(queued)
    });
    let text = 'Spark: idle';
    if (runs.length) {
      text = `Spark: ${jobs} job${jobs === 1 ? '' : 's'} · ${done}/${total} tasks`;
      if (queued) {
        text += ` · ${queued} cell${queued === 1 ? '' : 's'} queued`;
      }
    }
    this.node.textContent = text;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'sparkscope:plugin',
  description: 'Your Spark work across notebooks: a sidebar and a status bar item',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null
  ) => {
    const model = new WorkModel();
    const panel = new SparkPanel(model, path => {
      void app.commands.execute('docmanager:open', { path });
    });
    app.shell.add(panel, 'left', { rank: 900 });
    if (statusBar) {
      const item = new SparkStatus(model, tracker, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem('sparkscope:status', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => true
      });
      if (labShell) {
        labShell.currentChanged.connect(() => item.draw());
      }
      // a cell queued or started changes the count at once, not at the next poll
      tracker.activeCellChanged.connect(() => item.draw());
      const watch = (p: NotebookPanel) =>
        p.content.model?.cells.changed.connect(() => item.draw());
      tracker.widgetAdded.connect((_t, p) => watch(p));
      window.setInterval(() => item.draw(), 500);
    }
    model.start();
  }
};

export default plugin;
