// volley's web console: a single page over the JSON API (docs/console.md).
// No inline code (the CSP forbids it), no library, no cookies: on the TCP
// listener the bearer token is asked once and kept in sessionStorage.
'use strict';

const TOKEN_KEY = 'volley.token';
const HIST_SECONDS = 3600;
const POLL_MS = 2000;
const EVENTS_MAX = 100;
const $ = (id) => document.getElementById(id);

const state = {
  config: { actions: false },
  hist: null,          // {end, delivered[], deferred[], bounced[]}
  timer: null,
  events: null,        // AbortController of the job's event stream
  route: null,
  page: { after: [], next: null },
  tokenWaiters: null,
  ticks: 0,
};

// ---- the API: bearer token on 401, asked with a form ----

function askToken(refused) {
  if (!state.tokenWaiters) {
    state.tokenWaiters = [];
    $('token-error').hidden = !refused;
    $('token-input').value = '';
    const d = $('token-dialog');
    if (!d.open) d.showModal();
  }
  return new Promise((resolve) => state.tokenWaiters.push(resolve));
}

function tokenSubmitted(ev) {
  ev.preventDefault();
  const t = $('token-input').value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $('token-dialog').close();
  const w = state.tokenWaiters || [];
  state.tokenWaiters = null;
  w.forEach((r) => r());
}

async function api(path, opts = {}) {
  for (let tries = 0; tries < 5; tries++) {
    const headers = Object.assign({}, opts.headers || {});
    const t = sessionStorage.getItem(TOKEN_KEY);
    if (t) headers.Authorization = 'Bearer ' + t;
    const r = await fetch(path, Object.assign({}, opts, { headers, cache: 'no-store' }));
    if (r.status !== 401) return r;
    if (t) sessionStorage.removeItem(TOKEN_KEY);
    await askToken(!!t);
  }
  throw new Error('unauthorized');
}

async function getJSON(path) {
  const r = await api(path);
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : r.statusText;
    throw new Error(path + ': ' + r.status + ' ' + msg);
  }
  return body;
}

// Each JSON line of an NDJSON answer, as it arrives (fetch: EventSource
// cannot send the bearer header).
async function eachLine(resp, fn) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) fn(JSON.parse(line));
    }
  }
  if (buf.trim()) fn(JSON.parse(buf));
}

async function getLines(path) {
  const r = await api(path);
  if (!r.ok) throw new Error(path + ': ' + r.status);
  const out = [];
  await eachLine(r, (o) => out.push(o));
  return out;
}

// ---- small helpers ----

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k === 'id' || k === 'href' || k === 'class' || k === 'max' || k === 'value')
      e.setAttribute(k, v);
    else e[k] = v;
  }
  kids.forEach((k) => e.append(k));
  return e;
}

function fmtNum(n) { return n == null ? '–' : Number(n).toLocaleString('en'); }

function fmtBytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + ' ' + u[i];
}

function fmtDur(s) {
  if (!isFinite(s) || s < 0) return '–';
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h';
  return (s / 86400).toFixed(1) + ' d';
}

function cards(dl, items) {
  dl.replaceChildren(...items.map(([k, v, key]) =>
    el('div', { 'data-key': key || k }, el('dt', { text: k }), el('dd', { text: v }))));
}

function setStatus(ok, text) {
  const s = $('status');
  s.dataset.state = ok ? 'ok' : 'error';
  s.textContent = text;
}

// Left to send, and when that is done at the job's rate (client-side).
function eta(job) {
  const c = job.counts || {};
  const left = (c.queued || 0) + (c.deferred || 0) + (c.in_flight || 0);
  const rate = job.rate ? job.rate.delivered_per_s : 0;
  if (job.done || !left) return 'done';
  if (job.state !== 'active' || !rate) return '–';
  return fmtDur(left / rate);
}

function progressOf(job) {
  const c = job.counts || {};
  const fin = (c.delivered || 0) + (c.bounced || 0) + (c.expired || 0) +
    (c.cancelled || 0) + (c.suppressed || 0);
  return job.recipients ? fin / job.recipients : 0;
}

// ---- charts on <canvas> ----

function sizeCanvas(cv) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(300, cv.clientWidth), h = cv.clientHeight || cv.height;
  if (cv.width !== Math.round(w * ratio)) { cv.width = Math.round(w * ratio); cv.height = Math.round(h * ratio); }
  const g = cv.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  return { g, w, h };
}

function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function drawHistory() {
  const cv = $('chart-history');
  const h = state.hist;
  if (!cv || !h || cv.closest('.view').hidden) return;
  const { g, w, h: ht } = sizeCanvas(cv);
  const pad = { l: 44, r: 8, t: 8, b: 20 };
  const kinds = ['delivered', 'deferred', 'bounced'];
  let max = 1;
  kinds.forEach((k) => h[k].forEach((v) => { if (v > max) max = v; }));
  const n = h.delivered.length;
  const x = (i) => pad.l + (w - pad.l - pad.r) * i / Math.max(1, n - 1);
  const y = (v) => ht - pad.b - (ht - pad.t - pad.b) * v / max;
  g.strokeStyle = cssVar('--line'); g.fillStyle = cssVar('--muted'); g.font = '11px system-ui';
  g.beginPath(); g.moveTo(pad.l, y(0)); g.lineTo(w - pad.r, y(0)); g.moveTo(pad.l, y(max)); g.lineTo(w - pad.r, y(max)); g.stroke();
  g.fillText(String(max), 4, y(max) + 4); g.fillText('0', 4, y(0));
  g.fillText('-60 min', pad.l, ht - 4); g.fillText('now', w - pad.r - 22, ht - 4);
  kinds.forEach((k) => {
    g.strokeStyle = cssVar('--' + k); g.lineWidth = 1.2; g.beginPath();
    h[k].forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.stroke();
  });
  cv.dataset.seconds = String(n);
  cv.dataset.end = String(h.end);
  cv.dataset.max = String(max);
}

function drawBars(cv, pairs) {
  const { g, w, h } = sizeCanvas(cv);
  cv.dataset.bars = String(pairs.length);
  if (!pairs.length) { g.fillStyle = cssVar('--muted'); g.fillText('no bounces', 10, 20); return; }
  const max = Math.max(1, ...pairs.map((p) => p[1]));
  const rowH = Math.min(24, (h - 8) / pairs.length);
  g.font = '12px system-ui';
  pairs.forEach(([name, v], i) => {
    const y0 = 4 + i * rowH;
    g.fillStyle = cssVar('--bounced');
    g.fillRect(170, y0 + 2, (w - 240) * v / max, rowH - 6);
    g.fillStyle = cssVar('--fg');
    g.fillText(name, 4, y0 + rowH - 8);
    g.fillText(fmtNum(v), 176 + (w - 240) * v / max, y0 + rowH - 8);
  });
}

// The history: the last hour once, then the last few seconds merged in.
function mergeHistory(h) {
  const kinds = ['delivered', 'deferred', 'bounced'];
  if (!state.hist || h.seconds >= HIST_SECONDS) { state.hist = h; return; }
  const cur = state.hist, shift = h.end - cur.end;
  if (shift < 0) return;
  kinds.forEach((k) => {
    const a = cur[k].slice(Math.min(shift, cur[k].length));
    while (a.length < HIST_SECONDS) a.push(0);
    a.splice(a.length - h[k].length, h[k].length, ...h[k]);
    cur[k] = a;
  });
  cur.end = h.end;
}

// ---- the overview ----

async function loadOverview(first) {
  const secs = first || !state.hist ? HIST_SECONDS : 10;
  const [hist, stats, health, jobs] = await Promise.all([
    getJSON('/v1/stats/history?seconds=' + secs), getJSON('/v1/stats'),
    getJSON('/v1/health'), getJSON('/v1/jobs?limit=50')]);
  mergeHistory(hist);
  drawHistory();
  const r = stats.scheduler.recipients || {}, d = stats.scheduler.delivery || {};
  cards($('totals'), [
    ['jobs', fmtNum(stats.scheduler.jobs), 'jobs'], ['active jobs', fmtNum(stats.scheduler.jobs_active), 'jobs_active'],
    ['delivered', fmtNum(r.delivered), 'delivered'], ['deferred', fmtNum(r.deferred), 'deferred'],
    ['bounced', fmtNum(r.bounced), 'bounced'], ['queued', fmtNum(r.queued), 'queued'],
    ['in flight', fmtNum(d.in_flight), 'in_flight'], ['connections', fmtNum(d.connections), 'connections']]);
  cards($('spool'), [
    ['accepting jobs', health.accepting ? 'yes' : 'no', 'accepting'],
    ['spool used', fmtBytes(stats.spool.used_bytes), 'used_bytes'],
    ['disk free', fmtBytes(stats.spool.free_bytes), 'free_bytes'],
    ['journal', d.journal_blocked ? 'blocked' : 'ok', 'journal'],
    ['uptime', fmtDur(stats.uptime_s), 'uptime'], ['version', stats.version, 'version']]);
  const last = (k) => state.hist[k].slice(-11, -1).reduce((a, b) => a + b, 0) / 10;
  cards($('rates'), [['delivered/s', last('delivered').toFixed(1), 'delivered'],
    ['deferred/s', last('deferred').toFixed(1), 'deferred'], ['bounced/s', last('bounced').toFixed(1), 'bounced']]);
  // the jobs still sending first, then the newest
  const rank = (j) => (j.state === 'active' ? 0 : j.state === 'paused' ? 1 : 2);
  renderJobs((jobs.jobs || []).slice().sort((a, b) => rank(a) - rank(b)));
}

function renderJobs(jobs) {
  const rows = jobs.map((j) => {
    const c = j.counts || {};
    const p = progressOf(j);
    return el('tr', { 'data-job-id': j.id, 'data-state': j.state },
      el('td', {}, el('a', { href: '#/job/' + j.id, text: j.id })),
      el('td', { text: j.campaign || '' }),
      el('td', {}, el('span', { class: 'badge', 'data-state': j.state, text: j.state })),
      el('td', {}, el('progress', { max: '1', value: String(p), 'data-job-id': j.id, title: (p * 100).toFixed(1) + ' %' })),
      el('td', { text: fmtNum(c.delivered) }), el('td', { text: fmtNum(c.deferred) }),
      el('td', { text: fmtNum(c.bounced) }),
      el('td', { text: j.rate ? j.rate.delivered_per_s.toFixed(1) : '–' }),
      el('td', { class: 'eta', text: eta(j) }));
  });
  $('jobs-table').tBodies[0].replaceChildren(...rows);
  $('jobs-empty').hidden = rows.length > 0;
}

// ---- a job ----

async function loadJob(id) {
  const job = await getJSON('/v1/jobs/' + encodeURIComponent(id));
  $('job-id').textContent = job.id;
  const b = $('job-state');
  b.textContent = job.state; b.dataset.state = job.state;
  $('job-meta').textContent = [job.campaign && 'campaign ' + job.campaign, job.priority,
    'created ' + job.created, job.paused_reason && 'paused: ' + job.paused_reason].filter(Boolean).join(' · ');
  $('job-progress').value = progressOf(job);
  const c = job.counts || {}, f = job.feedback || {};
  cards($('job-counters'), [
    ['recipients', fmtNum(job.recipients), 'recipients'],
    ...['queued', 'in_flight', 'delivered', 'deferred', 'bounced', 'expired', 'cancelled', 'suppressed']
      .map((k) => [k.replace('_', ' '), fmtNum(c[k]), k]),
    ['rate/s', job.rate ? job.rate.delivered_per_s.toFixed(1) : '–', 'rate'], ['ETA', eta(job), 'eta'],
    ['complaints', fmtNum(f.complaints), 'complaints'], ['async bounces', fmtNum(f.async_bounces), 'async_bounces']]);
  $('job-actions').hidden = !state.config.actions;
  $('job-pause').disabled = job.state !== 'active';
  $('job-resume').disabled = job.state !== 'paused';
  $('job-cancel').disabled = job.done || job.state === 'cancelled';
  return job;
}

// Bounce classes of the job, from its journal (server-side): the
// bounced recipients by class, then the deferred ones.
async function loadClasses(id) {
  const c = await getJSON('/v1/jobs/' + encodeURIComponent(id) + '/classes');
  const pairs = Object.entries(c.bounced || {}).sort((a, b) => b[1] - a[1]);
  drawBars($('chart-classes'), pairs);
  const def = Object.entries(c.deferred || {}).map(([k, v]) => k + ' ' + fmtNum(v)).join(', ');
  $('classes-note').textContent = def ? 'deferred now: ' + def : '';
}

function rcptRow(r) {
  const resp = r.response ? [r.response.code, r.response.enhanced, r.response.text].filter(Boolean).join(' ') : (r.reason || '');
  return el('tr', { 'data-index': String(r.index), 'data-state': r.state },
    el('td', { text: String(r.index) }), el('td', { class: 'wrap', text: r.email }),
    el('td', { text: r.state }), el('td', { text: r.bounce_class || '' }),
    el('td', { text: String(r.attempts) }), el('td', { class: 'wrap', text: resp }),
    el('td', { text: r.updated || '' }));
}

// One page of recipients, server-side (limit/after); the text filter
// narrows the rows of the page.
async function loadBounces(id) {
  const st = $('bounce-state').value, limit = Number($('bounce-limit').value);
  const after = state.page.after[state.page.after.length - 1];
  let q = '/v1/jobs/' + encodeURIComponent(id) + '/recipients?limit=' + limit;
  if (st) q += '&state=' + st;
  if (after != null) q += '&after=' + after;
  const rows = await getLines(q);
  const needle = $('bounce-filter').value.trim().toLowerCase();
  const shown = needle ? rows.filter((r) => JSON.stringify(r).toLowerCase().includes(needle)) : rows;
  $('bounce-table').tBodies[0].replaceChildren(...shown.map(rcptRow));
  state.page.next = rows.length === limit ? rows[rows.length - 1].index : null;
  $('bounce-next').disabled = state.page.next == null;
  $('bounce-page').textContent = 'page ' + (state.page.after.length + 1) + ': ' + shown.length +
    ' of ' + rows.length + ' rows' + (state.page.next == null ? ' (last page)' : '');
}

function eventRow(e) {
  const resp = e.response ? [e.response.code, e.response.enhanced, e.response.text].filter(Boolean).join(' ') : (e.reason || '');
  return el('tr', { 'data-type': e.type || '' }, el('td', { text: e.timestamp || e.time || '' }),
    el('td', { text: e.type || '' }), el('td', { class: 'wrap', text: e.recipient || e.email || '' }),
    el('td', { class: 'wrap', text: resp }));
}

// The job's events, live: the stream stays open until the route changes.
async function followEvents(id) {
  stopEvents();
  const ac = new AbortController();
  state.events = ac;
  const body = $('job-events').tBodies[0];
  body.replaceChildren();
  const live = $('events-live');
  try {
    const r = await api('/v1/events?follow=1&from=end&job=' + encodeURIComponent(id), { signal: ac.signal });
    if (!r.ok) throw new Error('events: ' + r.status);
    live.textContent = 'live'; live.dataset.state = 'on';
    await eachLine(r, (e) => {
      body.prepend(eventRow(e));
      while (body.rows.length > EVENTS_MAX) body.lastElementChild.remove();
    });
  } catch (err) {
    if (err.name !== 'AbortError') setStatus(false, String(err.message || err));
  }
  if (state.events === ac) { live.textContent = 'off'; live.dataset.state = 'off'; }
}

// Leaving a job: its stream ends, its rows and the live badge go with it.
function stopEvents() {
  if (state.events) state.events.abort();
  state.events = null;
  const live = $('events-live');
  if (live) { live.textContent = 'off'; live.dataset.state = 'off'; }
  const t = $('job-events');
  if (t) t.tBodies[0].replaceChildren();
}

async function jobAction(ev) {
  const verb = ev.target.dataset.action;
  const id = $('job-id').textContent;
  // cancelling cannot be undone: a second click confirms it
  if (verb === 'cancel' && ev.target.dataset.confirm !== '1') {
    ev.target.dataset.confirm = '1';
    ev.target.textContent = 'Confirm cancel';
    $('job-action-result').textContent = 'queued recipients of ' + id + ' will not be sent';
    return;
  }
  if (verb === 'cancel') { ev.target.dataset.confirm = '0'; ev.target.textContent = 'Cancel'; }
  const r = await api('/v1/jobs/' + encodeURIComponent(id) + '/' + verb, { method: 'POST' });
  const body = await r.json().catch(() => null);
  $('job-action-result').textContent = r.ok ? verb + ': done' : verb + ': ' + (body && body.error ? body.error.message : r.status);
  await loadJob(id);
}

// ---- queues ----

function tlsText(t) {
  if (!t) return '';
  let s = t.policy || '';
  if (t.mta_sts) s += ' · MTA-STS ' + (t.mta_sts.mode || '') + (t.mta_sts.id ? ' (' + t.mta_sts.id + ')' : '');
  return s;
}

function backoffText(b) {
  if (!b) return 'none';
  return (b.suspended ? 'suspended' : 'slowed') + (b.until ? ' until ' + b.until : '') + ': ' + (b.reason || '');
}

async function loadQueues() {
  const q = await getJSON('/v1/queues');
  const rows = (q.queues || []).map((s) => el('tr', { 'data-site': s.site, 'data-source': s.source || '', 'data-backoff': s.backoff ? (s.backoff.suspended ? 'suspended' : 'slowed') : 'none' },
    el('td', { class: 'wrap', text: s.site + (s.provider ? ' (' + s.provider + ')' : '') }),
    el('td', { text: s.source ? s.source + ' ' + (s.source_address || '') : '' }),
    el('td', { text: fmtNum(s.queued) }), el('td', { text: fmtNum(s.deferred) }),
    el('td', { text: fmtNum(s.in_flight) }),
    el('td', { text: (s.connections != null ? fmtNum(s.connections) + ' / ' : 'max ') + fmtNum(s.max_connections) }),
    el('td', { text: (s.rate == null ? 'no cap' : s.rate + '/s') + (s.current_rate ? ' (now ' + Number(s.current_rate).toFixed(1) + '/s)' : '') }),
    el('td', { class: 'wrap backoff', text: backoffText(s.backoff) }),
    el('td', { class: 'wrap', text: s.last_response ? s.last_response.text : '' }),
    el('td', { class: 'tls', text: tlsText(s.tls) })));
  $('queues-table').tBodies[0].replaceChildren(...rows);
  $('queues-empty').hidden = rows.length > 0;
  const stats = await getJSON('/v1/stats');
  const src = (stats.scheduler.delivery || {}).sources || {};
  const srows = Object.entries(src).map(([name, v]) => el('tr', { 'data-source': name },
    el('td', { text: name }), el('td', { text: v.address || '' }), el('td', { text: fmtNum(v.delivered) }),
    el('td', { text: fmtNum(v.bounced) }), el('td', { text: fmtNum(v.transient) }),
    el('td', { class: 'wrap', text: warmText(v.warmup) })));
  $('sources-table').tBodies[0].replaceChildren(...srows);
  $('sources-empty').hidden = srows.length > 0;
}

function warmText(w) {
  if (!w) return 'none';
  if (Array.isArray(w)) return w.map(warmText).join('; ');
  if (typeof w !== 'object') return String(w);
  return Object.entries(w).map(([k, v]) => k + ' ' + (v && typeof v === 'object' ? '(' + warmText(v) + ')' : v)).join(', ');
}

// ---- routes: #/, #/job/ID, #/queues ----

function parseRoute() {
  const h = location.hash.replace(/^#/, '') || '/';
  let m;
  if (h === '/' || h === '') return { view: 'overview' };
  if (h === '/queues') return { view: 'queues' };
  if ((m = h.match(/^\/job\/([A-Za-z0-9-]{1,64})$/))) return { view: 'job', id: m[1] };
  return { view: 'error' };
}

function show(view) {
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-' + view; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.route === view));
  document.body.dataset.view = view;
}

async function tick(first) {
  const r = state.route;
  try {
    if (r.view === 'overview') await loadOverview(first);
    else if (r.view === 'queues') await loadQueues();
    else if (r.view === 'job') {
      await loadJob(r.id);
      // the journal's passes: the list once, the classes every 5th tick
      if (first) await loadBounces(r.id);
      if (first || ++state.ticks % 5 === 0) await loadClasses(r.id);
    }
    if (state.route === r) setStatus(true, 'updated ' + new Date().toLocaleTimeString());
  } catch (err) {
    setStatus(false, String(err.message || err));
  }
}

async function onRoute() {
  clearInterval(state.timer);
  stopEvents();
  state.route = parseRoute();
  state.page = { after: [], next: null };
  show(state.route.view);
  if (state.route.view === 'error') { $('error-text').textContent = 'No page at ' + location.hash; return; }
  const r = state.route;
  await tick(true);
  if (state.route !== r) return;
  if (r.view === 'job') followEvents(r.id);
  state.timer = setInterval(() => tick(false), POLL_MS);
}

function reloadBounces(reset) {
  if (reset) state.page.after = [];
  const r = state.route;
  if (r.view !== 'job') return;
  loadBounces(r.id).catch((e) => setStatus(false, String(e.message || e)));
}

async function init() {
  $('token-form').addEventListener('submit', tokenSubmitted);
  ['job-pause', 'job-resume', 'job-cancel'].forEach((id) => $(id).addEventListener('click', jobAction));
  $('bounce-state').addEventListener('change', () => reloadBounces(true));
  $('bounce-limit').addEventListener('change', () => reloadBounces(true));
  $('bounce-filter').addEventListener('input', () => reloadBounces(false));
  $('bounce-form').addEventListener('submit', (e) => e.preventDefault());
  $('bounce-first').addEventListener('click', () => reloadBounces(true));
  $('bounce-next').addEventListener('click', () => {
    if (state.page.next == null) return;
    state.page.after.push(state.page.next);
    reloadBounces(false);
  });
  window.addEventListener('hashchange', onRoute);
  window.addEventListener('resize', drawHistory);
  try {
    const r = await fetch('/console/config.json', { cache: 'no-store' });
    if (r.ok) state.config = await r.json();
  } catch (e) { /* defaults: read-only */ }
  document.body.dataset.actions = state.config.actions ? 'on' : 'off';
  onRoute();
}

document.addEventListener('DOMContentLoaded', init);
