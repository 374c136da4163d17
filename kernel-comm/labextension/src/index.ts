// sparkscope in JupyterLab: the user's Spark work across all their notebooks, in a "Spark"
// sidebar (the Connect servers their sessions use, every running cell run with Cancel, the
// recently finished ones) and in the status bar (the active notebook's work now). Everything
// comes from the Jupyter server extension (sparkscope/labserver.py), which holds the user's
// credential for the agent: no token reaches the browser.

import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification as LabNotification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
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
  /** Its UI's path through the Jupyter server's proxy, when the proxy serves it. */
  uiProxy?: string;
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
      await this.poll();
    } catch (e) {
      // a view that throws must not stop the poll
      console.error('sparkscope:', e);
    }
    const wait = document.visibilityState === 'visible' ? POLL_MS : POLL_HIDDEN_MS;
    this.timer = window.setTimeout(() => void this.tick(), wait);
  }

  private async poll(): Promise<void> {
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
      try {
        fn();
      } catch (e) {
        console.error('sparkscope:', e);
      }
    }
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

// ---- the user's own server: start, stop, restart with a configuration bundle; its driver log

interface Bundle {
  name: string;
  master: string;
  driverMemory: string;
  executorMemory: string;
  connectPort: number;
  confs: Record<string, string>;
  packages: string[];
}

interface OwnStatus {
  state: string; // stopped | starting | running | stopping | failed
  bundle: string;
  pid: number | null;
  connectUrl: string;
  startedAtMs: number | null;
  message: string;
  driverLog: string;
}

interface OwnAnswer {
  ok: boolean;
  code?: string;
  message?: string;
  server?: OwnStatus;
  bundles?: Bundle[];
  bundleErrors?: Record<string, string>;
}

const OWN_POLL_MS = 2000;

async function call(
  path: string,
  init: RequestInit = {}
): Promise<{ status: number; body: any }> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, path);
  const resp = await ServerConnection.makeRequest(url, init, settings);
  let body: any = null;
  try {
    body = await resp.json();
  } catch {
    body = { ok: false, message: `the Jupyter server answered ${resp.status}` };
  }
  return { status: resp.status, body };
}

function labelled(label: string, input: HTMLElement): HTMLElement {
  const row = el('label', 'sparkscope-own-field');
  row.appendChild(el('span', 'sparkscope-own-label', label));
  row.appendChild(input);
  return row;
}

function input(name: string, value: string, placeholder = ''): HTMLInputElement {
  const i = document.createElement('input');
  i.className = 'jp-mod-styled sparkscope-own-input';
  i.name = name;
  i.value = value;
  i.placeholder = placeholder;
  return i;
}

/** The sidebar's "Your own server" section. Its status line follows a poll; the bundle form is
 * drawn once per bundle chosen, so that a poll never wipes what the user types. */
class OwnServerView {
  readonly node = el('div', 'sparkscope-own');
  private readonly statusLine = el('div', 'sparkscope-own-status');
  private readonly buttons = el('div', 'sparkscope-own-buttons');
  private readonly select = document.createElement('select');
  private readonly form = el('form', 'sparkscope-own-form') as HTMLFormElement;
  private readonly said = el('div', 'sparkscope-own-said');
  private answer: OwnAnswer | null = null;
  private formFor = '';
  private timer: number | null = null;
  disabled = false;

  constructor(private readonly openLog: () => void) {
    this.node.appendChild(el('h3', 'sparkscope-sb-heading', 'Your own server'));
    this.node.appendChild(this.statusLine);
    this.select.className = 'jp-mod-styled sparkscope-own-bundle';
    this.select.addEventListener('change', () => this.drawForm(true));
    this.node.appendChild(labelled('Bundle', this.select));
    this.node.appendChild(this.buttons);
    this.said.setAttribute('role', 'status');
    this.node.appendChild(this.said);
    const details = document.createElement('details');
    details.className = 'sparkscope-own-details';
    details.appendChild(el('summary', '', 'Configuration bundle'));
    details.appendChild(this.form);
    this.node.appendChild(details);
    this.form.addEventListener('submit', ev => {
      ev.preventDefault();
      void this.save();
    });
  }

  start(): void {
    void this.tick();
  }

  private async tick(): Promise<void> {
    try {
      const { status, body } = await call('sparkscope/api/server');
      if (status === 404) {
        this.disabled = true; // turned off by the operator: the section goes
        this.node.hidden = true;
        return;
      }
      this.answer = body as OwnAnswer;
      this.draw();
    } catch (e) {
      this.statusLine.textContent = `cannot reach the Jupyter server: ${e}`;
    }
    this.timer = window.setTimeout(() => void this.tick(), OWN_POLL_MS);
  }

  private async refresh(): Promise<void> {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
    await this.tick();
  }

  private draw(): void {
    const a = this.answer;
    if (!a || !a.server) {
      this.statusLine.textContent = a?.message || 'asking the Jupyter server…';
      return;
    }
    const s = a.server;
    this.node.dataset.state = s.state;
    const parts = [s.state];
    if (s.bundle) {
      parts.push(`bundle ${s.bundle}`);
    }
    if (s.connectUrl) {
      parts.push(s.connectUrl);
    }
    if (s.state === 'running' && s.startedAtMs) {
      parts.push(`up ${duration(Date.now() - s.startedAtMs)}`);
    }
    this.statusLine.textContent = parts.join(' · ');
    this.statusLine.title = s.message || '';
    if (s.state === 'failed' && s.message) {
      this.said.textContent = s.message.split('\n').slice(-3).join('\n');
    }
    const names = (a.bundles || []).map(b => b.name);
    const current = this.select.value || s.bundle || names[0] || 'default';
    if (Array.from(this.select.options, o => o.value).join('\n') !== names.join('\n')) {
      this.select.replaceChildren(
        ...names.map(n => {
          const o = document.createElement('option');
          o.value = n;
          o.textContent = n;
          return o;
        })
      );
    }
    this.select.value = names.includes(current) ? current : names[0] || '';
    this.drawButtons(s);
    this.drawForm(false);
  }

  private drawButtons(s: OwnStatus): void {
    const up = s.state === 'running' || s.state === 'starting';
    const busy = s.state === 'starting' || s.state === 'stopping';
    const wanted = up ? ['restart', 'stop'] : ['start'];
    if (this.buttons.dataset.for === `${wanted.join()}|${busy}`) {
      return;
    }
    this.buttons.dataset.for = `${wanted.join()}|${busy}`;
    this.buttons.replaceChildren();
    for (const action of wanted) {
      const b = el(
        'button',
        `jp-mod-styled sparkscope-own-${action}`,
        action[0].toUpperCase() + action.slice(1)
      ) as HTMLButtonElement;
      b.disabled = busy && action !== 'stop';
      b.addEventListener('click', () => void this.act(action));
      this.buttons.appendChild(b);
    }
    const log = el('button', 'jp-mod-styled sparkscope-own-log', 'Driver log') as HTMLButtonElement;
    log.addEventListener('click', () => this.openLog());
    this.buttons.appendChild(log);
  }

  private async act(action: string): Promise<void> {
    this.said.textContent = `${action}…`;
    try {
      const { body } = await call('sparkscope/api/server', {
        method: 'POST',
        body: JSON.stringify({ action, bundle: this.select.value || 'default' })
      });
      this.said.textContent = body.ok ? '' : `not done: ${body.message || body.code}`;
    } catch (e) {
      this.said.textContent = `not done: ${e}`;
    }
    await this.refresh();
  }

  private drawForm(force: boolean): void {
    const name = this.select.value;
    if (!force && name === this.formFor) {
      return;
    }
    this.formFor = name;
    const b = (this.answer?.bundles || []).find(x => x.name === name);
    const confs = Object.entries(b?.confs || {})
      .map(([k, v]) => `${k}=${v}`)
      .join('\n');
    const area = document.createElement('textarea');
    area.className = 'jp-mod-styled sparkscope-own-input';
    area.name = 'confs';
    area.rows = 3;
    area.value = confs;
    area.placeholder = 'spark.sql.shuffle.partitions=8';
    this.form.replaceChildren(
      labelled('Name', input('name', name || 'default')),
      labelled('Master', input('master', b?.master || 'local[*]', 'local[*]')),
      labelled('Driver memory', input('driverMemory', b?.driverMemory || '', '2g')),
      labelled('Executor memory', input('executorMemory', b?.executorMemory || '', '2g')),
      labelled('Connect port', input('connectPort', String(b?.connectPort || 15002))),
      labelled('Confs (key=value per line)', area),
      labelled(
        'Packages (group:artifact:version, comma-separated)',
        input('packages', (b?.packages || []).join(', '))
      ),
      el('button', 'jp-mod-styled sparkscope-own-save', 'Save bundle')
    );
  }

  private async save(): Promise<void> {
    const f = new FormData(this.form);
    const text = (k: string) => String(f.get(k) || '').trim();
    const confs: Record<string, string> = {};
    const problems: string[] = [];
    for (const line of text('confs').split('\n')) {
      if (!line.trim()) {
        continue;
      }
      const at = line.indexOf('=');
      if (at <= 0) {
        problems.push(`conf line '${line}' is not key=value`);
        continue;
      }
      confs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    const port = Number(text('connectPort'));
    const bundle = {
      master: text('master'),
      driverMemory: text('driverMemory'),
      executorMemory: text('executorMemory'),
      connectPort: Number.isInteger(port) ? port : text('connectPort'),
      confs,
      packages: text('packages')
        .split(',')
        .map(p => p.trim())
        .filter(p => p)
    };
    if (problems.length) {
      this.said.textContent = problems.join('; ');
      return;
    }
    const name = text('name');
    try {
      const { body } = await call(`sparkscope/api/bundles/${encodeURIComponent(name)}`, {
        method: 'PUT',
        body: JSON.stringify(bundle)
      });
      this.said.textContent = body.ok ? `bundle ${name} saved` : `not saved: ${body.message}`;
      if (body.ok) {
        this.answer = body as OwnAnswer;
        this.draw();
        this.select.value = name;
        this.drawForm(true);
      }
    } catch (e) {
      this.said.textContent = `not saved: ${e}`;
    }
  }
}

// ---- the driver's log of the user's own server, tailed live

const LOG_POLL_MS = 1000;
const LOG_MAX_LINES = 5000;
const LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

interface LogLine {
  text: string;
  level: string; // a continuation line (a stack frame) has its first line's level
}

/** A log4j line's level: Spark's pattern (`25/12/05 10:00:01 WARN Logger: …`) or its structured
 * JSON lines (`{"ts": …, "level": "WARN", …}`). */
export function lineLevel(text: string): string {
  const m = /^\S+ \S+ (TRACE|DEBUG|INFO|WARN|ERROR|FATAL)\b/.exec(text);
  if (m) {
    return m[1];
  }
  const j = /^\{.*"level"\s*:\s*"(TRACE|DEBUG|INFO|WARN|ERROR|FATAL)"/.exec(text);
  return j ? j[1] : '';
}

class LogPanel extends Widget {
  private lines: LogLine[] = [];
  private offset = -1;
  private dropped = 0;
  private timer: number | null = null;
  private readonly level = document.createElement('select');
  private readonly search = document.createElement('input');
  private readonly info = el('div', 'sparkscope-log-info');
  private readonly body = el('div', 'sparkscope-log-lines');

  constructor(
    private readonly model: WorkModel,
    private readonly open: (path: string) => void
  ) {
    super();
    this.id = 'sparkscope-driver-log';
    this.addClass('sparkscope-log');
    this.title.label = 'Spark driver log';
    this.title.icon = sparkIcon;
    this.title.closable = true;
    const bar = el('div', 'sparkscope-log-bar');
    this.level.className = 'jp-mod-styled sparkscope-log-level';
    for (const l of ['ALL', 'INFO', 'WARN', 'ERROR']) {
      const o = document.createElement('option');
      o.value = l;
      o.textContent = l === 'ALL' ? 'all levels' : `${l} and above`;
      this.level.appendChild(o);
    }
    this.search.className = 'jp-mod-styled sparkscope-log-search';
    this.search.placeholder = 'search';
    this.search.type = 'search';
    this.level.addEventListener('change', () => this.draw());
    this.search.addEventListener('input', () => this.draw());
    bar.append(this.level, this.search, this.info);
    this.node.append(bar, this.body);
  }

  protected onAfterAttach(): void {
    void this.tick();
  }

  protected onBeforeDetach(): void {
    if (this.timer !== null) {
      window.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private async tick(): Promise<void> {
    try {
      const { body } = await call(`sparkscope/api/server/log?offset=${this.offset}`);
      if (body.ok) {
        if (body.reset) {
          this.lines = [];
        }
        this.offset = body.offset;
        let last = this.lines.length ? this.lines[this.lines.length - 1].level : '';
        for (const text of body.lines as string[]) {
          const level = lineLevel(text) || last;
          last = level;
          this.lines.push({ text, level });
        }
        if (this.lines.length > LOG_MAX_LINES) {
          this.dropped += this.lines.length - LOG_MAX_LINES;
          this.lines = this.lines.slice(-LOG_MAX_LINES);
        }
        this.info.textContent = body.exists
          ? `${body.path}` + (this.dropped ? ` · ${this.dropped} older lines not kept` : '')
          : 'no driver log yet: start your server from the Spark sidebar';
        if (body.lines.length || body.reset) {
          this.draw();
        }
      }
    } catch (e) {
      this.info.textContent = `cannot reach the Jupyter server: ${e}`;
    }
    if (this.isAttached) {
      this.timer = window.setTimeout(() => void this.tick(), LOG_POLL_MS);
    }
  }

  /** The cell whose operation a line names, from the user's cell runs. */
  private cellOf(text: string): CellRun | null {
    const ids = text.match(UUID);
    if (!ids) {
      return null;
    }
    for (const r of this.model.work?.runs || []) {
      if (r.notebook && r.operationIds.some(o => ids.includes(o))) {
        return r;
      }
    }
    return null;
  }

  private draw(): void {
    const min = this.level.value === 'ALL' ? -1 : LEVELS.indexOf(this.level.value);
    const needle = this.search.value.trim().toLowerCase();
    const follow = this.body.scrollTop + this.body.clientHeight >= this.body.scrollHeight - 4;
    const rows: HTMLElement[] = [];
    for (const line of this.lines) {
      if (min >= 0 && LEVELS.indexOf(line.level) < min) {
        continue;
      }
      if (needle && !line.text.toLowerCase().includes(needle)) {
        continue;
      }
      const row = el('div', 'sparkscope-log-line', line.text);
      row.dataset.level = line.level;
      if (line.level === 'ERROR' || line.level === 'FATAL' || line.level === 'WARN') {
        const run = this.cellOf(line.text);
        if (run) {
          const link = el('button', 'sparkscope-log-cell', `→ ${cellName(run)}`);
          link.addEventListener('click', () => this.open(run.notebook));
          row.appendChild(link);
        }
      }
      rows.push(row);
    }
    this.body.replaceChildren(...rows);
    this.node.dataset.shown = String(rows.length);
    if (follow) {
      this.body.scrollTop = this.body.scrollHeight;
    }
  }
}

// ---- links into Spark's UI through the Jupyter server's proxy, for the cells' widgets

/** The proxied address of a link into the UI of one of the user's applications that the proxy
 * serves, else null. */
export function proxiedLink(href: string, apps: Application[], baseUrl: string): string | null {
  for (const a of apps) {
    const origin = (a.uiLink || '').replace(/\/+$/, '');
    if (!a.uiProxy || !origin) {
      continue;
    }
    if (href === origin || href.startsWith(`${origin}/`)) {
      return URLExt.join(baseUrl, a.uiProxy, href.slice(origin.length));
    }
  }
  return null;
}

function offerProxiedLinks(model: WorkModel): void {
  const baseUrl = ServerConnection.makeSettings().baseUrl;
  (globalThis as any).sparkscopeUiProxy = (href: string) =>
    proxiedLink(String(href), model.work?.applications || [], baseUrl);
}

// ---- the sidebar

class SparkPanel extends Widget {
  private readonly status = new Map<string, string>(); // tag or operation → cancel outcome
  private readonly workBox = el('div', 'sparkscope-sb-work');

  constructor(
    private readonly model: WorkModel,
    private readonly open: (path: string) => void,
    own: OwnServerView | null
  ) {
    super();
    this.id = 'sparkscope-sidebar';
    this.addClass('sparkscope-sidebar');
    this.title.caption = 'Spark: your work across notebooks';
    this.title.icon = sparkIcon;
    this.node.appendChild(el('h2', 'sparkscope-sb-title', 'Spark'));
    this.node.appendChild(this.workBox);
    if (own) {
      this.node.appendChild(own.node);
    }
    model.onChange(() => this.draw());
    this.draw();
  }

  private draw(): void {
    const root = this.workBox;
    root.replaceChildren();
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
    // an agent's error answer carries no lists
    const runs = work.runs || [];
    const applications = work.applications || [];
    const users = new Map<string, string>();
    for (const r of runs) {
      users.set(r.appId, r.userId);
    }

    root.appendChild(el('h3', 'sparkscope-sb-heading', 'Spark Connect servers'));
    if (!applications.length) {
      root.appendChild(el('div', 'sparkscope-sb-muted', 'none of your sessions yet'));
    }
    for (const a of applications) {
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
      const link = a.uiProxy
        ? URLExt.join(ServerConnection.makeSettings().baseUrl, a.uiProxy)
        : safeLink(a.uiLink || '', users.get(a.id) || '');
      if (link) {
        const ui = el('a', 'sparkscope-sb-ui-link', 'Spark UI ↗') as HTMLAnchorElement;
        ui.href = link;
        ui.target = '_blank';
        ui.rel = 'noopener noreferrer';
        box.appendChild(ui);
      }
      root.appendChild(box);
    }

    const running = runs.filter(r => r.state === 'running');
    const done = runs.filter(r => r.state !== 'running');
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

// ---- notifications: a long cell run's end, in the browser when the page is hidden, else in
// JupyterLab's notification centre

const ASKED_KEY = 'sparkscope:notification-permission-asked';
const DEFAULT_NOTIFY_AFTER_S = 30;

function runKey(r: CellRun): string {
  return `${r.appId} ${r.sessionId} ${r.tag || r.operationIds[0] || ''}`;
}

/** Spark's error class (`[DIVIDE_BY_ZERO] …` → DIVIDE_BY_ZERO), else the first line, short. */
export function errorClass(error: string | null): string {
  const text = error || '';
  const m = /\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]/.exec(text);
  if (m) {
    return m[1];
  }
  const first = text.split('\n')[0].trim();
  return first.length > 120 ? `${first.slice(0, 119)}…` : first || 'unknown error';
}

export function outcomeText(r: CellRun, tookMs: number): string {
  const cell = r.executionCount ? `cell ${r.executionCount}` : 'a cell';
  const jobs = `${r.jobs} job${r.jobs === 1 ? '' : 's'}`;
  switch (r.state) {
    case 'succeeded':
      return `${cell} · ${jobs} succeeded in ${duration(tookMs)}`;
    case 'failed':
      return `${cell} · failed: ${errorClass(r.error)}`;
    case 'cancelled':
      return `${cell} · cancelled after ${duration(tookMs)}`;
    default:
      return `${cell} · ${jobs} ended after ${duration(tookMs)}`;
  }
}

class Notifier {
  /** Seconds a cell's Spark work must have run for its end to be told; 0: never. */
  afterSeconds = DEFAULT_NOTIFY_AFTER_S;
  private readonly running = new Map<string, CellRun>(); // seen running by this page

  constructor(
    model: WorkModel,
    private readonly open: (path: string) => void
  ) {
    model.onChange(() => this.check(model.work));
  }

  private check(work: Work | null): void {
    if (!work || !work.ok) {
      return;
    }
    const listed = new Set<string>();
    for (const r of work.runs || []) {
      const key = runKey(r);
      listed.add(key);
      if (r.state === 'running') {
        this.running.set(key, r);
        if (this.long(Date.now() - r.startTimeMs)) {
          this.askOnce();
        }
      } else if (this.running.delete(key)) {
        const took = (r.endTimeMs || Date.now()) - r.startTimeMs;
        if (this.long(took)) {
          this.tell(r, took);
        }
      }
    }
    for (const key of [...this.running.keys()]) {
      if (!listed.has(key)) {
        this.running.delete(key); // aged out of the agent's list: its end is unknown here
      }
    }
  }

  private long(ms: number): boolean {
    return this.afterSeconds > 0 && ms >= this.afterSeconds * 1000;
  }

  /** The browser's permission is asked once, when a cell first runs long enough to need it. */
  private askOnce(): void {
    if (!('Notification' in window) || window.Notification.permission !== 'default') {
      return;
    }
    if (window.localStorage.getItem(ASKED_KEY)) {
      return;
    }
    window.localStorage.setItem(ASKED_KEY, String(Date.now()));
    void window.Notification.requestPermission();
  }

  private tell(r: CellRun, took: number): void {
    const title = r.notebook ? basename(r.notebook) : 'Spark';
    const body = outcomeText(r, took);
    const browser = 'Notification' in window && window.Notification.permission === 'granted';
    if (document.visibilityState === 'hidden' && browser) {
      const n = new window.Notification(title, { body, tag: runKey(r) });
      n.onclick = () => {
        window.focus();
        if (r.notebook) {
          this.open(r.notebook);
        }
      };
      return;
    }
    const type = r.state === 'succeeded' ? 'success' : r.state === 'failed' ? 'error' : 'info';
    LabNotification.emit(`${title}: ${body}`, type, { autoClose: 10000 });
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

/**
 * Lets a cell's widget (an anywidget module, with no access to the notebook) offer an
 * advisor's fix as a new code cell below its own cell: `sparkscopeInsertCell(node, code)`
 * inserts it, never runs it, and returns whether it could. The widget's own node says which
 * cell it is in.
 */
export function offerCellInsertion(tracker: INotebookTracker): void {
  (globalThis as any).sparkscopeInsertCell = (node: unknown, code: unknown): boolean => {
    if (!(node instanceof Node) || typeof code !== 'string') {
      return false;
    }
    let found = false;
    tracker.forEach(panel => {
      if (found) {
        return;
      }
      const notebook = panel.content;
      const index = notebook.widgets.findIndex(cell => cell.node.contains(node));
      const model = notebook.model;
      if (index < 0 || !model) {
        return;
      }
      model.sharedModel.insertCell(index + 1, { cell_type: 'code', source: code });
      notebook.activeCellIndex = index + 1;
      found = true;
    });
    return found;
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'sparkscope:plugin',
  description: 'Your Spark work across notebooks: a sidebar and a status bar item',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell, IStatusBar, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null,
    settings: ISettingRegistry | null
  ) => {
    const model = new WorkModel();
    const open = (path: string) => void app.commands.execute('docmanager:open', { path });
    let log: LogPanel | null = null;
    const openLog = () => {
      if (!log || log.isDisposed) {
        log = new LogPanel(model, open);
        app.shell.add(log, 'main');
      }
      app.shell.activateById(log.id);
    };
    const own = new OwnServerView(openLog);
    const panel = new SparkPanel(model, open, own);
    const notifier = new Notifier(model, open);
    if (settings) {
      const apply = (s: ISettingRegistry.ISettings) => {
        const after = s.get('notifyAfterSeconds').composite;
        notifier.afterSeconds = typeof after === 'number' ? after : DEFAULT_NOTIFY_AFTER_S;
      };
      settings
        .load(plugin.id)
        .then(s => {
          apply(s);
          s.changed.connect(apply);
        })
        .catch(e => console.error('sparkscope: settings not loaded', e));
    }
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
    offerProxiedLinks(model);
    offerCellInsertion(tracker);
    model.start();
    own.start();
  }
};

export default plugin;
