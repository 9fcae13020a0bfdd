import uPlot from './vendor/uplot/uPlot.esm.js';
import { io } from './vendor/socket.io/socket.io.esm.min.js';
import { api, ApiError, login, logout, refresh, session } from './api.js';
import { $, ago, fill, h } from './dom.js';

/*
 * The Fieldsync dashboard (SPEC §11): fleet (live over Socket.IO), sync charts, the conflict
 * review queue, contacts search, eligibility, alerts. Every value reaches the page as text
 * through dom.js; no inline script or style (the page's CSP forbids both).
 */

const state = { view: 'fleet', socket: null, charts: [], fleetTimer: null, devices: [] };

function showError(where, error) {
  const message = error instanceof ApiError && error.status === 403 ? 'Your role may not see this (admins and managers only).' : error.message;
  fill(where, h('span', { class: 'error' }, message));
}

// ---- Session ---------------------------------------------------------------------------

function showLogin(message = '') {
  $('#login-view').hidden = false;
  $('#app-view').hidden = true;
  $('#session').hidden = true;
  fill($('#login-error'), message);
  state.socket?.close();
  state.socket = null;
  $('#login').focus();
}

async function showApp() {
  const user = session.get()?.user;
  if (!user) return showLogin();
  if (user.role !== 'admin' && user.role !== 'manager') {
    session.set(null);
    return showLogin('The dashboard is for admins and managers.');
  }
  $('#login-view').hidden = true;
  $('#app-view').hidden = false;
  $('#session').hidden = false;
  fill($('#whoami'), `${user.name ?? user.agentCode} (${user.role})`);
  connectLive();
  await Promise.all([select(state.view), loadConflictCount(), loadAlertCount()]);
}

$('#login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  fill($('#login-error'));
  const button = event.submitter ?? $('#login-form button');
  button.disabled = true;
  try {
    await login($('#login').value.trim(), $('#password').value);
    $('#password').value = '';
    await showApp();
  } catch (error) {
    fill($('#login-error'), error instanceof ApiError && error.status === 401 ? 'Wrong login or password.' : error.message);
  } finally {
    button.disabled = false;
  }
});

$('#logout').addEventListener('click', async () => {
  await logout();
  showLogin();
});

// ---- Navigation --------------------------------------------------------------------------

const loaders = {
  fleet: loadFleet,
  sync: loadSync,
  conflicts: loadConflicts,
  contacts: () => searchContacts(),
  eligibility: () => loadEligibility(),
  alerts: loadAlerts,
};

async function select(view) {
  state.view = view;
  for (const button of document.querySelectorAll('.tabs button')) {
    const current = button.dataset.view === view;
    button.setAttribute('aria-current', current ? 'page' : 'false');
  }
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== `view-${view}`;
  await loaders[view]();
}

for (const button of document.querySelectorAll('.tabs button')) {
  button.addEventListener('click', () => {
    void select(button.dataset.view);
    $('#main').focus();
  });
}

// ---- Live (Socket.IO) -----------------------------------------------------------------------

function connectLive() {
  state.socket?.close();
  const socket = io({ auth: (cb) => cb({ token: session.get()?.accessToken }), transports: ['websocket'] });
  state.socket = socket;
  const live = $('#live');
  // Fleet and alert events come only to sockets that ask (admins and managers).
  socket.on('connect', () => {
    socket.emit('fleet:watch', {}, (answer) => fill(live, answer?.success ? 'live' : 'offline'));
  });
  socket.on('disconnect', () => fill(live, 'offline'));
  socket.on('connect_error', () => fill(live, 'offline'));
  // An expired access token ends the socket: new tokens, then a new connection.
  socket.on('auth_error', async () => {
    try {
      await refresh();
      connectLive();
    } catch {
      showLogin('Your session ended; sign in again.');
    }
  });
  socket.on('fleet_update', () => {
    if (state.view !== 'fleet' || state.fleetTimer) return;
    state.fleetTimer = setTimeout(() => {
      state.fleetTimer = null;
      void loadFleet();
    }, 500);
  });
  socket.on('alert', () => {
    void loadAlertCount();
    if (state.view === 'alerts') void loadAlerts();
  });
}

// ---- Fleet ---------------------------------------------------------------------------

function healthClass(score) {
  if (score < 70) return 'bad';
  if (score < 80) return 'warn';
  return 'good';
}

async function loadFleet() {
  const tbody = $('#fleet-table tbody');
  try {
    const { data: devices } = await api('GET', '/api/devices');
    state.devices = devices;
    const online = devices.filter((d) => d.online).length;
    const behind = devices.filter((d) => d.versionsBehind > 100).length;
    const unhealthy = devices.filter((d) => d.healthScore < 80).length;
    fill(
      $('#fleet-summary'),
      card('Devices', devices.length),
      card('Online now', online),
      card('> 100 versions behind', behind),
      card('Health under 80', unhealthy),
    );
    fill(
      tbody,
      devices.length === 0 ? h('tr', {}, h('td', { colspan: 8 }, 'No device has synced yet.')) : null,
      devices.map((d) =>
        h(
          'tr',
          { dataset: { deviceId: d.deviceId } },
          h('th', { scope: 'row' }, d.deviceId),
          h('td', { dataset: { label: 'Agent' } }, d.agentCode ?? '—'),
          h('td', { dataset: { label: 'State' } }, h('span', { class: d.online ? 'pill on' : 'pill' }, d.online ? 'online' : 'offline'), d.syncStatus === 'error' ? h('span', { class: 'pill bad' }, 'error') : null),
          h('td', { class: 'num', dataset: { label: 'Health' } }, h('span', { class: `score ${healthClass(d.healthScore)}` }, d.healthScore)),
          h('td', { class: 'num', dataset: { label: 'Behind' } }, d.versionsBehind),
          h('td', { dataset: { label: 'Last seen' } }, ago(d.lastSeenAt)),
          h('td', { dataset: { label: 'Last sync' } }, ago(d.lastSyncAt)),
          h('td', { dataset: { label: 'Platform' } }, [d.platform, d.appVersion, d.networkType].filter(Boolean).join(' · ') || '—'),
        ),
      ),
    );
  } catch (error) {
    fill(tbody, h('tr', {}, h('td', { colspan: 8 }, error.status === 403 ? 'Admins and managers only.' : error.message)));
  }
}

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'card-value' }, value), h('div', { class: 'card-label' }, label));
}

// ---- Sync charts ---------------------------------------------------------------------------

$('#sync-range').addEventListener('change', () => void loadSync());

async function loadSync() {
  const hours = Number($('#sync-range').value);
  const to = new Date();
  const from = new Date(to.getTime() - hours * 3600_000);
  const totals = $('#sync-totals');
  try {
    const { data } = await api('GET', `/api/analytics/sync?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`);
    const t = data.totals;
    const pct = (x) => (x === null ? '—' : `${(x * 100).toFixed(1)}%`);
    const ms = (x) => (x === null ? '—' : `${x} ms`);
    fill(totals, card('Pulls', t.pulls), card('Pushes', t.pushes), card('Success', pct(t.successRate)), card('Conflicts', pct(t.conflictRate)), card('p95', ms(t.p95Ms)), card('Items synced', t.itemsSynced));
    drawCharts(data.buckets);
  } catch (error) {
    showError(totals, error);
  }
}

function drawCharts(buckets) {
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  const xs = buckets.map((b) => Date.parse(b.start) / 1000);
  const width = Math.max(280, Math.min(900, $('#main').clientWidth - 32));
  const nul = (v) => (v === null ? null : v);
  const make = (target, series, data) => {
    const el = $(target);
    el.replaceChildren();
    state.charts.push(new uPlot({ width, height: 220, series: [{}, ...series], axes: [{}, {}] }, [xs, ...data], el));
  };
  make('#chart-volume', [{ label: 'pulls', stroke: '#2563eb' }, { label: 'pushes', stroke: '#16a34a' }, { label: 'failures', stroke: '#dc2626' }], [
    buckets.map((b) => b.pulls),
    buckets.map((b) => b.pushes),
    buckets.map((b) => b.failures),
  ]);
  make('#chart-latency', [{ label: 'p50', stroke: '#16a34a' }, { label: 'p95', stroke: '#d97706' }, { label: 'p99', stroke: '#dc2626' }], [
    buckets.map((b) => nul(b.p50Ms)),
    buckets.map((b) => nul(b.p95Ms)),
    buckets.map((b) => nul(b.p99Ms)),
  ]);
  make('#chart-rates', [{ label: 'success %', stroke: '#16a34a' }, { label: 'conflict %', stroke: '#dc2626' }], [
    buckets.map((b) => (b.successRate === null ? null : b.successRate * 100)),
    buckets.map((b) => (b.conflictRate === null ? null : b.conflictRate * 100)),
  ]);
}

// ---- Conflicts ---------------------------------------------------------------------------

async function loadConflictCount() {
  try {
    const res = await api('GET', '/api/conflicts?status=pending&limit=1');
    fill($('#conflict-count'), res.pagination?.total ? String(res.pagination.total) : '');
  } catch {
    fill($('#conflict-count'));
  }
}

const show = (value) => (value === undefined ? '—' : typeof value === 'string' ? value : JSON.stringify(value));

async function loadConflicts() {
  const list = $('#conflict-list');
  const status = $('#conflicts-status');
  try {
    const res = await api('GET', '/api/conflicts?status=pending&limit=100');
    fill(status, res.data.length === 0 ? 'No conflict waits for a decision.' : `${res.pagination?.total ?? res.data.length} pending`);
    fill(list, res.data.map(conflictCard));
    fill($('#conflict-count'), res.data.length ? String(res.pagination?.total ?? res.data.length) : '');
  } catch (error) {
    showError(status, error);
  }
}

function conflictCard(c) {
  const client = c.clientChange ?? {};
  const clientData = client.data ?? {};
  const server = c.serverBefore ?? {};
  const fields = Object.keys(clientData);
  const message = h('p', { class: 'error', role: 'alert' });
  const resolve = async (choose, data) => {
    fill(message);
    try {
      await api('POST', `/api/conflicts/${encodeURIComponent(c.id)}/resolve`, data === undefined ? { choose } : { choose, data });
      fill($('#conflicts-status'), `Resolved (${choose}).`);
      await loadConflicts();
      $('#conflicts-status').focus?.();
    } catch (error) {
      fill(message, error.message);
    }
  };
  // The merged record: one input per field the device changed, prefilled with the device's
  // value; text fields are taken as typed, other values (numbers, flags, lists) as JSON.
  const isText = (v) => v === null || v === undefined || typeof v === 'string';
  const rows = fields.map((f) => {
    const text = isText(server[f]) && isText(clientData[f]);
    const toInput = (v) => (v === null || v === undefined ? '' : text ? String(v) : JSON.stringify(v));
    const input = h('input', { class: 'merged-field', dataset: { field: f }, 'aria-label': `Merged value of ${f}`, spellcheck: 'false' });
    input.value = toInput(clientData[f]);
    const row = h(
      'div',
      { class: 'merge-row' },
      h('span', { class: 'merge-name' }, f),
      input,
      h('button', { type: 'button', onclick: () => void (input.value = toInput(server[f])) }, 'Server value'),
      h('button', { type: 'button', onclick: () => void (input.value = toInput(clientData[f])) }, 'Device value'),
    );
    return { f, input, text, row };
  });
  const editorBox = h(
    'div',
    { class: 'editor', hidden: true, role: 'group', 'aria-label': `Merged record of ${c.recordId}` },
    rows.map((r) => r.row),
    h('button', {
      type: 'button',
      class: 'primary',
      onclick: () => {
        const data = {};
        for (const r of rows) {
          const raw = r.input.value;
          if (r.text) data[r.f] = raw === '' ? null : raw;
          else {
            try {
              data[r.f] = raw === '' ? null : JSON.parse(raw);
            } catch {
              fill(message, `${r.f}: enter a JSON value (a number, true/false, a list).`);
              r.input.focus();
              return;
            }
          }
        }
        void resolve('merged', data);
      },
    }, 'Save merged'),
  );
  return h(
    'article',
    { class: 'conflict', dataset: { conflictId: c.id }, 'aria-label': `Conflict on ${c.collection} ${c.recordId}` },
    h('h3', {}, `${c.collection} · ${c.recordId}`),
    h('p', { class: 'meta' }, `${client.operation ?? 'update'} from device ${c.deviceId ?? '—'} · ${c.strategy} · ${ago(c.createdAt)}`),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Server'), h('th', { scope: 'col' }, 'Device'))),
        h(
          'tbody',
          {},
          fields.length === 0 ? h('tr', {}, h('td', { colspan: 3 }, client.operation === 'delete' ? 'The device deleted this record.' : 'No fields.')) : null,
          fields.map((f) => h('tr', {}, h('th', { scope: 'row' }, f), h('td', {}, show(server[f])), h('td', {}, show(clientData[f])))),
        ),
      ),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', onclick: () => void resolve('server') }, 'Keep server'),
      h('button', { type: 'button', onclick: () => void resolve('client') }, 'Take device'),
      client.operation === 'delete'
        ? null
        : h('button', {
            type: 'button',
            'aria-expanded': 'false',
            onclick: (event) => {
              editorBox.hidden = !editorBox.hidden;
              event.currentTarget.setAttribute('aria-expanded', String(!editorBox.hidden));
              if (!editorBox.hidden) rows[0]?.input.focus();
            },
          }, 'Edit merged'),
    ),
    editorBox,
    message,
  );
}

// ---- Contacts ---------------------------------------------------------------------------

$('#contact-search-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void searchContacts();
});

async function searchContacts() {
  const term = $('#contact-search').value.trim();
  const status = $('#contacts-status');
  try {
    const res = await api('GET', `/api/contacts?limit=50${term ? `&search=${encodeURIComponent(term)}` : ''}`);
    fill(status, `${res.pagination?.total ?? res.data.length} contacts${term ? ` match "${term}"` : ''}`);
    fill(
      $('#contacts-table tbody'),
      res.data.map((c) =>
        h(
          'tr',
          { dataset: { contactId: c.id } },
          h('th', { scope: 'row' }, [c.firstName, c.lastName].filter(Boolean).join(' ')),
          h('td', { dataset: { label: 'Phone' } }, c.phonePrimary ?? '—'),
          h('td', { dataset: { label: 'Email' } }, c.email ?? '—'),
          h('td', { dataset: { label: 'Company' } }, c.company ?? '—'),
          h('td', { dataset: { label: 'Do not call' } }, c.doNotCall ? 'yes' : 'no'),
        ),
      ),
    );
  } catch (error) {
    showError(status, error);
  }
}

// ---- Eligibility ---------------------------------------------------------------------------

$('#eligibility-form').addEventListener('submit', (event) => {
  event.preventDefault();
  void loadEligibility();
});

async function loadEligibility() {
  const status = $('#eligibility-status');
  const project = $('#eligibility-project').value.trim();
  try {
    const res = await api('GET', `/api/eligible-calls?limit=100${project ? `&projectId=${encodeURIComponent(project)}` : ''}`);
    const rows = Array.isArray(res.data) ? res.data : [];
    fill(status, `${rows.length} callable pairs${project ? ` in project ${project}` : ''}`);
    fill(
      $('#eligibility-table tbody'),
      rows.map((r) =>
        h(
          'tr',
          {},
          h('td', {}, r.projectName ? `${r.projectName} (${r.projectId})` : r.projectId),
          h('td', {}, [r.contact?.firstName, r.contact?.lastName].filter(Boolean).join(' ') || r.contactId),
          h('td', {}, r.contact?.phonePrimary ?? '—'),
          h('td', {}, r.contact?.preferredChannel ?? '—'),
        ),
      ),
    );
  } catch (error) {
    if (error.status === 404 && /^Route /.test(error.message)) fill(status, 'Outreach is not available on this server yet.');
    else if (error.status === 404) fill(status, error.message);
    else showError(status, error);
  }
}

$('#pair-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const out = $('#pair-result');
  const projectId = $('#pair-project').value.trim();
  const contactId = $('#pair-contact').value.trim();
  try {
    const { data } = await api('GET', `/api/eligibility?projectId=${encodeURIComponent(projectId)}&contactId=${encodeURIComponent(contactId)}`);
    fill(
      out,
      h('p', {}, h('strong', {}, data.eligible ? 'Eligible: this contact may be called now.' : 'Not eligible:')),
      data.reasons?.length ? h('ul', {}, data.reasons.map((r) => h('li', {}, h('code', {}, r.code), ' ', r.message))) : null,
    );
  } catch (error) {
    if (error.status === 404 && /^Route /.test(error.message)) fill(out, 'Outreach is not available on this server yet.');
    else showError(out, error);
  }
});

// ---- Alerts ---------------------------------------------------------------------------

async function loadAlertCount() {
  try {
    const { data } = await api('GET', '/api/alerts?status=active');
    fill($('#alert-count'), data.length ? String(data.length) : '');
  } catch {
    fill($('#alert-count'));
  }
}

function alertItem(a) {
  return h(
    'li',
    { class: `alert ${a.severity}`, dataset: { alertId: a.id } },
    h('span', { class: 'pill' }, a.severity),
    ' ',
    h('strong', {}, a.type.replaceAll('_', ' ')),
    ': ',
    a.message,
    h('span', { class: 'meta' }, ` · raised ${ago(a.createdAt)}${a.resolvedAt ? ` · resolved ${ago(a.resolvedAt)}` : ''}`),
  );
}

async function loadAlerts() {
  try {
    const [active, resolved] = await Promise.all([api('GET', '/api/alerts?status=active'), api('GET', '/api/alerts?status=resolved&limit=50')]);
    fill($('#alerts-active'), active.data.length ? active.data.map(alertItem) : h('li', {}, 'No active alert.'));
    fill($('#alerts-resolved'), resolved.data.length ? resolved.data.map(alertItem) : h('li', {}, 'None.'));
    fill($('#alert-count'), active.data.length ? String(active.data.length) : '');
  } catch (error) {
    showError($('#alerts-active'), error);
  }
}

// ---- Start ---------------------------------------------------------------------------

if (session.get()) void showApp();
else showLogin();
