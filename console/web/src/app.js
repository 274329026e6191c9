// The admin console page: Firebase Auth sign-in, then the admin callables (console/main.py)
// polled every few seconds. The page shows nothing itself to an account without the `admin`
// claim, and the callables refuse such an account anyway: the server is the gate, not this file.
import { initializeApp } from 'firebase/app';
import {
  connectAuthEmulator, getAuth, onAuthStateChanged, signInWithEmailAndPassword, signOut,
} from 'firebase/auth';
import { connectFunctionsEmulator, getFunctions, httpsCallable } from 'firebase/functions';
import {
  BarController, BarElement, CategoryScale, Chart, Filler, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
} from 'chart.js';

Chart.register(
  BarController, BarElement, CategoryScale, Filler, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
);

const STATUS_EVERY_MS = 5000;
const DEPTH_EVERY_POLLS = 6;
// Pub/Sub has no peek: reading the dead-letter hold leases its messages for the moment of the
// scan, and a second scan at the same time sees them as absent. So every call that reads the
// hold (the depth, the list, a replay, a purge) runs in one lane, one after the other, and the
// depth is measured every DEPTH_EVERY_POLLS status polls only.
const TENANTS_EVERY_MS = 5000;
const $ = (id) => document.getElementById(id);
const timings = {};

// --- configuration ----------------------------------------------------------------------------

async function loadConfig() {
  // console-config.json: {projectId, region, apiKey?, authDomain?, emulators?: {auth, functions}}.
  // Without apiKey (Firebase Hosting), the project's web config comes from Hosting's reserved URL.
  const config = await (await fetch('console-config.json', { cache: 'no-store' })).json();
  if (!config.apiKey) {
    const init = await (await fetch('/__/firebase/init.json')).json();
    Object.assign(config, { apiKey: init.apiKey, authDomain: init.authDomain });
  }
  return config;
}

// --- small helpers ----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? '—'));
  }
  return node;
}

function ago(iso) {
  if (!iso) return '—';
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)} s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  return ago(new Date(Date.now() - seconds * 1000).toISOString()).replace(' ago', '');
}

function stateBadge(state) {
  return el('span', { class: `state state-${state}`, 'data-state': state }, state.replaceAll('_', ' '));
}

function replaceRows(table, rows, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (!rows.length) {
    body.append(el('tr', {}, el('td', { colspan: table.tHead.rows[0].cells.length, class: 'empty' }, emptyText)));
  }
}

async function timed(name, promise) {
  const started = performance.now();
  try {
    return await promise;
  } finally {
    timings[name] = Math.round(performance.now() - started);
    $('timings').textContent = 'last calls: ' + Object.entries(timings)
      .map(([key, ms]) => `${key} ${ms} ms`).join(' · ');
  }
}

// --- the console ------------------------------------------------------------------------------

class AdminConsole {
  constructor(functions) {
    this.call = (name, data) => timed(name, httpsCallable(functions, name)(data ?? {})).then((r) => r.data);
    this.tab = 'overview';
    this.cursors = [null];
    this.timers = [];
    this.charts = null;
    this.polls = 0;
    this.lane = Promise.resolve();
  }

  inLane(work) {
    const run = this.lane.then(work, work);
    this.lane = run.catch(() => {});
    return run;
  }

  start() {
    for (const button of document.querySelectorAll('nav button[data-tab]')) {
      button.addEventListener('click', () => this.show(button.dataset.tab));
    }
    $('tenant-query').addEventListener('submit', (event) => {
      event.preventDefault();
      this.cursors = [null];
      this.loadTenants();
    });
    $('tenant-filter').addEventListener('change', () => { this.cursors = [null]; this.loadTenants(); });
    $('tenant-next').addEventListener('click', () => {
      if (this.nextCursor) { this.cursors.push(this.nextCursor); this.loadTenants(); }
    });
    $('tenant-first').addEventListener('click', () => { this.cursors = [null]; this.loadTenants(); });
    $('dlq-form').addEventListener('submit', (event) => { event.preventDefault(); this.loadDeadLetters(); });
    $('dlq-dry').addEventListener('change', () => {
      const dry = $('dlq-dry').checked;
      $('dlq-replay').textContent = dry ? 'Replay (dry run)' : 'Replay';
      $('dlq-purge').textContent = dry ? 'Purge (dry run)' : 'Purge';
    });
    $('dlq-replay').addEventListener('click', () => this.changeDeadLetters('admin_replay_dead_letters'));
    $('dlq-purge').addEventListener('click', () => this.changeDeadLetters('admin_purge_dead_letters'));
    $('dlq-dry').dispatchEvent(new Event('change'));
    this.refreshStatus();
    this.loadTenants();
    this.timers.push(setInterval(() => this.refreshStatus(), STATUS_EVERY_MS));
    this.timers.push(setInterval(() => { if (this.tab === 'tenants') this.loadTenants(true); }, TENANTS_EVERY_MS));
  }

  stop() {
    this.timers.forEach(clearInterval);
    this.timers = [];
  }

  show(tab) {
    this.tab = tab;
    for (const button of document.querySelectorAll('nav button[data-tab]')) {
      button.classList.toggle('active', button.dataset.tab === tab);
    }
    for (const name of ['overview', 'tenants', 'dead-letters']) {
      $(`tab-${name}`).hidden = name !== tab;
    }
    if (tab === 'tenants') this.loadTenants();
    if (tab === 'dead-letters') this.loadDeadLetters();
  }

  // --- overview: admin_status ---------------------------------------------------------------

  async refreshStatus(withDepth = false) {
    const deadLetters = withDepth || this.polls++ % DEPTH_EVERY_POLLS === 0;
    const request = () => this.call('admin_status', { hours: 24, deadLetters });
    let answer;
    try {
      answer = await (deadLetters ? this.inLane(request) : request());
    } catch (error) {
      $('alerts').replaceChildren(el('div', { class: 'alert' }, `status unavailable: ${error.message}`));
      return;
    }
    const { status, history } = answer;
    $('refreshed').textContent = `updated ${new Date().toLocaleTimeString()}`;
    const alerts = status.alerts.map((a) => el('div', { class: 'alert', 'data-alert': a.kind }, `⚠ ${a.kind.replaceAll('_', ' ')}: ${a.message}`));
    $('alerts').replaceChildren(...(alerts.length ? alerts : [el('div', { class: 'quiet' }, 'No alert condition fires (agenttrader status --check would exit 0).')]));
    const fired = new Set(status.alerts.map((a) => a.kind));
    const last = status.pulses[0];
    $('card-pulse').textContent = last
      ? `${last.success} ok · ${last.error} err · ${last.skipped} skip (${ago(last.timestamp)})`
      : 'none yet';
    $('card-pulse').classList.toggle('firing', fired.has('error_rate') || fired.has('slow_pulse'));
    $('card-failing').textContent = `${status.failing_tenants.length}${status.failing_capped ? '+' : ''}`;
    $('card-failing').classList.toggle('firing', fired.has('consecutive_failures'));
    if (deadLetters) {
      const held = status.dead_letters.held;
      $('card-dlq').textContent = held === null ? 'unknown' : `${held}${status.dead_letters.at_least ? '+' : ''}`;
      $('card-dlq').classList.toggle('firing', Boolean(held));
      $('dlq-badge').textContent = held ? String(held) : '';
    }
    $('card-pulses').textContent = String(history.pulses.length);
    $('hours').textContent = String(history.hours);
    $('slow-line').textContent = String(history.slow_pulse_seconds);
    this.drawCharts(history);
    replaceRows($('failing-table'), status.failing_tenants.slice(0, 50).map((t) => el('tr', { class: 'clickable', onclick: () => this.openTenant(t.uid) },
      el('td', {}, t.uid), el('td', {}, t.error_class), el('td', {}, String(t.consecutive_failures ?? '—')),
      el('td', {}, ago(t.last_failed_at)), el('td', {}, t.final ? 'failed' : 'retrying'),
      el('td', { class: 'error-text', title: t.error }, t.error))), 'No tenant is failing.');
  }

  drawCharts(history) {
    const labels = history.pulses.map((p) => (p.timestamp ? new Date(p.timestamp).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : p.pulse_id));
    const series = (key) => history.pulses.map((p) => p[key]);
    const durations = history.pulses.map((p) => (p.duration_seconds === null ? null : Math.round(p.duration_seconds * 10) / 10));
    const line = history.pulses.map(() => history.slow_pulse_seconds);
    if (!this.charts) {
      const common = { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: 'bottom' } } };
      this.charts = {
        pulses: new Chart($('pulse-chart'), {
          type: 'bar',
          data: { labels, datasets: [
            { label: 'success', data: series('success'), backgroundColor: '#1f9d55', stack: 'outcomes' },
            { label: 'error', data: series('error'), backgroundColor: '#d64545', stack: 'outcomes' },
            { label: 'skipped', data: series('skipped'), backgroundColor: '#8a94a6', stack: 'outcomes' },
            { label: 'published', data: series('published'), type: 'line', borderColor: '#2f5bea', pointRadius: 1 },
          ] },
          options: { ...common, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
        }),
        durations: new Chart($('duration-chart'), {
          type: 'line',
          data: { labels, datasets: [
            { label: 'duration (s)', data: durations, borderColor: '#2f5bea', backgroundColor: 'rgba(47,91,234,.12)', fill: true, pointRadius: 1 },
            { label: `alert line (${history.slow_pulse_seconds} s)`, data: line, borderColor: '#d64545', borderDash: [6, 4], pointRadius: 0 },
          ] },
          options: { ...common, scales: { y: { beginAtZero: true } } },
        }),
      };
    } else {
      const { pulses, durations: chart } = this.charts;
      pulses.data.labels = labels;
      ['success', 'error', 'skipped', 'published'].forEach((key, i) => { pulses.data.datasets[i].data = series(key); });
      chart.data.labels = labels;
      chart.data.datasets[0].data = durations;
      chart.data.datasets[1].data = line;
      pulses.update();
      chart.update();
    }
    $('pulse-chart').dataset.pulses = String(history.pulses.length);
  }

  // --- tenants: admin_tenants, admin_tenant ---------------------------------------------------

  async loadTenants(quiet = false) {
    const search = $('tenant-search').value.trim();
    const request = search
      ? { search }
      : { filter: $('tenant-filter').value, cursor: this.cursors[this.cursors.length - 1] };
    let page;
    try {
      page = await this.call('admin_tenants', request);
    } catch (error) {
      if (!quiet) $('tenant-note').textContent = `could not load: ${error.message}`;
      return;
    }
    this.nextCursor = page.next_cursor;
    $('tenant-next').disabled = !page.next_cursor;
    $('tenant-first').disabled = this.cursors.length === 1;
    const where = search ? `matching “${search}”` : `filter ${page.filter.replaceAll('_', ' ')}, page ${this.cursors.length}`;
    $('tenant-note').textContent = `${page.tenants.length} tenant(s), ${where}${page.truncated ? ' (more: refine the search)' : ''}`;
    const table = $('tenant-table');
    table.dataset.filter = search ? 'search' : page.filter;
    replaceRows(table, page.tenants.map((t) => el('tr', { class: 'clickable', 'data-uid': t.uid, onclick: () => this.openTenant(t.uid) },
      el('td', {}, t.uid), el('td', {}, t.email ?? '—'), el('td', {}, stateBadge(t.state)),
      el('td', {}, ago(t.last_sync)), el('td', {}, t.equity ?? '—'),
      el('td', {}, String(t.consecutive_failures || 0)), el('td', {}, t.error_class ?? '—'))), 'No tenant matches.');
  }

  async openTenant(uid) {
    if (this.tab !== 'tenants') this.show('tenants');
    const panel = $('tenant-detail');
    panel.hidden = false;
    panel.replaceChildren(el('p', {}, `Loading ${uid}…`));
    let detail;
    try {
      detail = await this.call('admin_tenant', { uid });
    } catch (error) {
      panel.replaceChildren(el('p', { class: 'error' }, error.message));
      return;
    }
    const t = detail.tenant;
    const facts = [
      ['uid', t.uid], ['email', t.email], ['state', stateBadge(t.state)], ['configured', String(t.configured)],
      ['trading enabled', String(t.trading_enabled)], ['last sync', ago(t.last_sync)], ['equity', t.equity],
      ['buying power', detail.snapshot.buying_power], ['cash', detail.snapshot.cash],
      ['positions', String(detail.snapshot.positions_count ?? '—')], ['failures in a row', String(t.consecutive_failures)],
      ['last error', t.error ? `${t.error_class}: ${t.error}` : '—'],
    ];
    const audit = detail.audit.map((a) => el('tr', {}, el('td', {}, a.at ? new Date(a.at).toLocaleString() : '—'),
      el('td', {}, a.action), el('td', {}, a.actor), el('td', { class: 'error-text', title: JSON.stringify(a.details) }, JSON.stringify(a.details))));
    const auditTable = el('table', { id: 'audit-table' }, el('thead', {}, el('tr', {}, el('th', {}, 'when'), el('th', {}, 'action'), el('th', {}, 'actor'), el('th', {}, 'details'))), el('tbody', {}));
    replaceRows(auditTable, audit, 'No audit entry.');
    panel.replaceChildren(
      el('h2', {}, `Tenant ${t.uid}`),
      el('dl', {}, facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')])),
      el('h2', {}, 'Audit trail (newest first)'), auditTable,
    );
  }

  // --- dead letters: admin_dead_letters, admin_replay_dead_letters, admin_purge_dead_letters ---

  filters() {
    const list = (id) => $(id).value.split(',').map((s) => s.trim()).filter(Boolean);
    return {
      uids: list('dlq-uid'), errorClasses: list('dlq-class'),
      olderThan: $('dlq-older').value.trim() || null, newerThan: $('dlq-newer').value.trim() || null,
    };
  }

  async loadDeadLetters() {
    let listing;
    try {
      listing = await this.inLane(() => this.call('admin_dead_letters', this.filters()));
    } catch (error) {
      $('dlq-summary').textContent = `could not list: ${error.message}`;
      return;
    }
    $('dlq-summary').textContent = `${listing.dead_letters.length} matching of ${listing.scanned}${listing.exhausted ? '' : '+'} held in ${listing.subscription}`;
    const table = $('dlq-groups');
    table.dataset.held = String(listing.scanned);
    replaceRows(table, listing.groups.map((g) => el('tr', { 'data-error-class': g.error_class },
      el('td', {}, g.error_class), el('td', {}, String(g.count)), el('td', {}, String(g.tenants)),
      el('td', {}, age(g.oldest_age_seconds)), el('td', {}, g.uids.join(', ')),
      el('td', {}, el('button', { type: 'button', onclick: () => { $('dlq-class').value = g.error_class; this.loadDeadLetters(); } }, 'filter')))), 'No dead letter held.');
  }

  async changeDeadLetters(name) {
    const dryRun = $('dlq-dry').checked;
    const purge = name === 'admin_purge_dead_letters';
    const request = { ...this.filters(), limit: Number($('dlq-limit').value) || 100, dryRun };
    if (purge && !dryRun) {
      if (!window.confirm('Delete the matching dead letters for good?')) return;
      request.confirm = true;
    }
    if (!purge) request.rate = Number($('dlq-rate').value);
    const result = $('dlq-result');
    result.textContent = `${purge ? 'purging' : 'replaying'}${dryRun ? ' (dry run)' : ''}…`;
    try {
      const report = await this.inLane(() => this.call(name, request));
      const counts = Object.entries(report.counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'nothing matched';
      result.textContent = `${dryRun ? 'dry run: ' : ''}${counts}; skipped (did not match) ${report.skipped}\n\n`
        + report.items.map((i) => `${i.status.padEnd(13)} ${i.uid ?? "—"}  ${i.error_class}  ${i.status === "replayed" ? `new message ${i.detail}` : (i.detail || "")}`).join('\n');
      result.dataset.done = name;
    } catch (error) {
      result.textContent = `${error.code ?? 'error'}: ${error.message}`;
    }
    this.loadDeadLetters();
    this.refreshStatus(true);
  }
}

// --- sign-in ----------------------------------------------------------------------------------

function showOnly(id) {
  for (const section of ['loading', 'sign-in', 'not-admin', 'console']) $(section).hidden = section !== id;
}

async function main() {
  const config = await loadConfig();
  const app = initializeApp({ apiKey: config.apiKey, authDomain: config.authDomain, projectId: config.projectId });
  const auth = getAuth(app);
  const functions = getFunctions(app, config.region);
  if (config.emulators) {
    connectAuthEmulator(auth, config.emulators.auth, { disableWarnings: true });
    const [host, port] = config.emulators.functions.split(':');
    connectFunctionsEmulator(functions, host, Number(port));
  }
  let running = null;
  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('sign-in-error').textContent = '';
    try {
      await timed('sign-in', signInWithEmailAndPassword(auth, $('email').value, $('password').value));
    } catch (error) {
      $('sign-in-error').textContent = `Sign-in failed: ${error.code ?? error.message}`;
    }
  });
  $('sign-out').addEventListener('click', () => signOut(auth));
  onAuthStateChanged(auth, async (user) => {
    running?.stop();
    running = null;
    $('who').hidden = !user;
    if (!user) { showOnly('sign-in'); return; }
    $('who-email').textContent = user.email ?? user.uid;
    const token = await user.getIdTokenResult();
    if (token.claims.admin !== true) {
      $('not-admin-email').textContent = user.email ?? user.uid;
      showOnly('not-admin');
      return;
    }
    showOnly('console');
    running = new AdminConsole(functions);
    running.start();
  });
}

main().catch((error) => {
  $('loading').textContent = `The console could not start: ${error.message}`;
});
