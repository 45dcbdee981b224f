// les web UI: one page, four views, hash routing (#/page?state) so every
// view can be shared as a link. Data comes only from the documented API
// (docs/api.md). Nothing from the API is ever parsed as HTML: elements are
// built with createElement and filled with textContent.
import { lineChart, fmtNum, fmtStamp, palette } from './chart.js';

const main = document.getElementById('main');
const statusEl = document.getElementById('status');

// ---- DOM helpers -------------------------------------------------------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') { for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f); continue; }
    if (k === 'text') { e.textContent = String(v); continue; }
    if (k === 'dataset') { Object.assign(e.dataset, v); continue; }
    e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const setStatus = (s) => { statusEl.textContent = s; };

// ---- API ---------------------------------------------------------------
let token = sessionStorage.getItem('les-token') || '';
let tokenWaiters = null;

function askToken(wrong) {
  if (!tokenWaiters) {
    tokenWaiters = [];
    const dlg = document.getElementById('token-dialog');
    document.getElementById('token-error').textContent = wrong ? 'That token was refused.' : '';
    dlg.showModal();
    document.getElementById('token-input').focus();
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
document.getElementById('token-form').addEventListener('submit', () => {
  token = document.getElementById('token-input').value;
  sessionStorage.setItem('les-token', token);
  const ws = tokenWaiters || [];
  tokenWaiters = null;
  ws.forEach((f) => f());
});

async function apiFetch(path, opts = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const r = await fetch(path, { ...opts, headers });
    if (r.status === 401) { await askToken(attempt > 0 || token !== ''); continue; }
    if (!r.ok) {
      const msg = (await r.text()).trim();
      throw new Error(`${r.status}: ${msg}`);
    }
    return r;
  }
  throw new Error('no valid token');
}
async function apiJSON(path) { return (await apiFetch(path)).json(); }
async function query(params) {
  const q = new URLSearchParams(params);
  const r = await apiFetch(`/query?${q}`);
  const text = await r.text();
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

// ---- routing -----------------------------------------------------------
function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [page, qs] = h.split('?');
  return { page: page || 'lambda', params: new URLSearchParams(qs || '') };
}
function go(page, params) {
  const qs = new URLSearchParams(params).toString();
  location.hash = `#/${page}${qs ? '?' + qs : ''}`;
}
function replaceState(page, params) {
  const qs = new URLSearchParams(params).toString();
  history.replaceState(null, '', `#/${page}${qs ? '?' + qs : ''}`);
}

let cleanup = [];
function onLeave(f) { cleanup.push(f); }

async function render() {
  for (const f of cleanup) try { f(); } catch { /* ignore */ }
  cleanup = [];
  const { page, params } = route();
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === page || (page === 'function' && a.dataset.page === 'lambda')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const view = { lambda: lambdaPage, function: functionPage, series: seriesPage, tail: tailPage, pipeline: pipelinePage }[page] || lambdaPage;
  main.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  delete main.dataset.ready;
  const started = performance.now();
  try {
    await view(params);
    main.dataset.ready = page;
    performance.mark('les-ready'); // read by the browser tests' measurements
    setStatus(`${page} in ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    main.replaceChildren(el('p', { class: 'error', role: 'alert', text: String(e.message || e) }));
    main.dataset.ready = 'error';
  }
}
window.addEventListener('hashchange', render);

// ---- shared ------------------------------------------------------------
const RANGES = { '1h': 3600e3, '6h': 6 * 3600e3, '24h': 86400e3 };
function stepFor(range) { return range === '1h' ? 'minute' : range === '6h' ? 'minute' : 'hour'; }
function rangeSelect(value, onChange) {
  return el('label', {}, 'Range', el('select', { 'aria-label': 'Time range', on: { change: (e) => onChange(e.target.value) } },
    Object.keys(RANGES).map((r) => el('option', { value: r, selected: r === value, text: `last ${r}` }))));
}
const ts = (line) => Date.parse(line.timestamp);
const pct = (line, p) => (line.percentiles || {})[p];

function table(headers, rows, attrs = {}) {
  return el('div', { class: 'table-wrap' }, el('table', attrs,
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, rows)));
}

// ---- Lambda ------------------------------------------------------------
const L = 'aws.lambda.';

async function lambdaPage(params) {
  const range = params.get('range') || '1h';
  const from = `-${range}`;
  const base = { from, step: 'all', centroids: '0' };
  const [inv, err, tmo, cold, dur, mem, series] = await Promise.all([
    query({ ...base, name: L + 'invocations' }), query({ ...base, name: L + 'errors' }),
    query({ ...base, name: L + 'timeouts' }), query({ ...base, name: L + 'cold_starts' }),
    query({ ...base, name: L + 'duration', q: '0.5,0.9,0.99' }), query({ ...base, name: L + 'max_memory_used', q: '1' }),
    query({ from, step: stepFor(range), name: L + 'invocations', merge: 'sources' }),
  ]);
  const by = (ls) => { const m = new Map(); for (const l of ls) m.set(l.source, (m.get(l.source) || 0) + (l.value ?? 0)); return m; };
  const byD = (ls) => new Map(ls.map((l) => [l.source, l]));
  const mInv = by(inv), mErr = by(err), mTmo = by(tmo), mCold = by(cold), mDur = byD(dur), mMem = byD(mem);
  const fns = [...new Set([...mInv.keys(), ...mDur.keys()])].sort();
  const total = (m) => [...m.values()].reduce((a, b) => a + b, 0);
  const controls = el('div', { class: 'controls' },
    rangeSelect(range, (r) => go('lambda', { range: r })),
    el('label', {}, 'Function', el('select', { 'aria-label': 'Open a function', on: { change: (e) => e.target.value && go('function', { fn: e.target.value, range }) } },
      el('option', { value: '', text: `${fns.length} functions…` }), fns.map((f) => el('option', { value: f, text: f })))));
  const kpi = (k, v, id) => el('div', { class: 'kpi', dataset: { kpi: id } }, el('div', { class: 'v', text: fmtNum(v) }), el('div', { class: 'k', text: k }));
  const rows = fns.map((f) => {
    const d = mDur.get(f), m = mMem.get(f);
    const cell = (col, v, unit = '') => el('td', { dataset: { col } }, v === undefined ? '–' : fmtNum(v) + unit);
    return el('tr', { dataset: { fn: f } },
      el('th', { scope: 'row' }, el('a', { href: `#/function?${new URLSearchParams({ fn: f, range })}`, text: f })),
      cell('invocations', mInv.get(f) ?? 0), cell('errors', mErr.get(f) ?? 0), cell('timeouts', mTmo.get(f) ?? 0),
      cell('cold_starts', mCold.get(f) ?? 0), cell('p50', d && pct(d, 'p50'), ' ms'), cell('p90', d && pct(d, 'p90'), ' ms'),
      cell('p99', d && pct(d, 'p99'), ' ms'), cell('max_memory', m && m.max, ' MB'));
  });
  main.replaceChildren(
    el('h1', { text: 'Lambda functions' }), controls,
    el('div', { class: 'kpis' }, kpi('invocations', total(mInv), 'invocations'), kpi('errors', total(mErr), 'errors'),
      kpi('timeouts', total(mTmo), 'timeouts'), kpi('cold starts', total(mCold), 'cold_starts')),
    fns.length === 0 ? el('p', { class: 'muted', text: `No aws.lambda.* windows in the last ${range}. They come from Lambda REPORT lines, Telemetry API records and the les extension, one minute (plus grace) after the invocation.` }) :
      table(['Function', 'Invocations', 'Errors', 'Timeouts', 'Cold starts', 'Duration p50', 'p90', 'p99', 'Max memory'], rows, { 'aria-label': 'Functions', id: 'fn-table' }),
    el('div', { class: 'card' }, el('h2', { text: 'Invocations, all functions' }),
      lineChart({ title: 'Invocations, all functions', series: [{ label: 'invocations', points: series.map((l) => [ts(l), l.value]) }], from: Date.now() - RANGES[range], to: Date.now(), full: true })));
}

async function functionPage(params) {
  const fn = params.get('fn') || '';
  const range = params.get('range') || '1h';
  const from = `-${range}`, step = stepFor(range);
  const q = (name, extra = {}) => query({ name: L + name, source: fn, from, step, merge: 'sources', centroids: '0', ...extra });
  const qa = (name, extra = {}) => query({ name: L + name, source: fn, from, step: 'all', merge: 'sources', centroids: '0', ...extra });
  const [inv, err, tmo, cold, dur, mem, tInv, tErr, tTmo, tCold, tDur, tMem] = await Promise.all([
    q('invocations'), q('errors'), q('timeouts'), q('cold_starts'), q('duration', { q: '0.5,0.9,0.99' }), q('max_memory_used', { q: '1' }),
    qa('invocations'), qa('errors'), qa('timeouts'), qa('cold_starts'), qa('duration', { q: '0.5,0.9,0.99' }), qa('max_memory_used', { q: '1' }),
  ]);
  const x = { from: Date.now() - RANGES[range], to: Date.now() };
  const pts = (ls, f) => ls.map((l) => [ts(l), f(l)]);
  const one = (ls) => ls[0];
  const kpi = (k, v, id, unit = '') => el('div', { class: 'kpi', dataset: { kpi: id } }, el('div', { class: 'v', text: v === undefined ? '–' : fmtNum(v) + unit }), el('div', { class: 'k', text: k }));
  const d = one(tDur), m = one(tMem);
  const errors = el('div', { class: 'tail', id: 'fn-errors', 'aria-live': 'polite', 'aria-label': 'Error logs arriving now' });
  const kept = await errorLogs(fn);
  main.replaceChildren(
    el('p', {}, el('a', { href: `#/lambda?range=${range}`, text: '← all functions' })),
    el('h1', {}, 'Function ', el('code', { text: fn })),
    el('div', { class: 'controls' }, rangeSelect(range, (r) => go('function', { fn, range: r }))),
    el('div', { class: 'kpis' },
      kpi('invocations', one(tInv)?.value ?? 0, 'invocations'), kpi('errors', one(tErr)?.value ?? 0, 'errors'),
      kpi('timeouts', one(tTmo)?.value ?? 0, 'timeouts'), kpi('cold starts', one(tCold)?.value ?? 0, 'cold_starts'),
      kpi('duration p50', d && pct(d, 'p50'), 'p50', ' ms'), kpi('p90', d && pct(d, 'p90'), 'p90', ' ms'), kpi('p99', d && pct(d, 'p99'), 'p99', ' ms'),
      kpi('max memory', m && m.max, 'max_memory', ' MB')),
    el('div', { class: 'grid' },
      el('div', { class: 'card' }, el('h2', { text: 'Invocations and errors' }), lineChart({ title: 'Invocations and errors', ...x, series: [
        { label: 'invocations', points: pts(inv, (l) => l.value) }, { label: 'errors', points: pts(err, (l) => l.value), color: palette[3] },
        { label: 'timeouts', points: pts(tmo, (l) => l.value), color: palette[1] }, { label: 'cold starts', points: pts(cold, (l) => l.value), color: palette[2] }] })),
      el('div', { class: 'card' }, el('h2', { text: 'Duration (ms)' }), lineChart({ title: 'Duration percentiles', unit: ' ms', ...x, series: [
        { label: 'p50', points: pts(dur, (l) => pct(l, 'p50')) }, { label: 'p90', points: pts(dur, (l) => pct(l, 'p90')), color: palette[1] },
        { label: 'p99', points: pts(dur, (l) => pct(l, 'p99')), color: palette[3] }] })),
      el('div', { class: 'card' }, el('h2', { text: 'Max memory used (MB)' }), lineChart({ title: 'Max memory used', unit: ' MB', ...x, series: [
        { label: 'max', points: pts(mem, (l) => l.max) }] }))),
    el('h2', { text: 'Latest error logs' }), kept,
    el('h2', { text: 'Arriving now' }),
    el('p', { class: 'muted', text: 'The live tail of this function’s log records that mention an error, while this page is open.' }),
    errors);
  openTail({ signal: 'logs', source: fn, text: 'error' }, errors, 50);
}

// errorLogs renders the error-level records les keeps for a source
// (/api/v1/errors), newest first; every field is text.
async function errorLogs(fn) {
  let r;
  try {
    r = await apiJSON(`/api/v1/errors?${new URLSearchParams({ source: fn })}`);
  } catch (e) {
    return el('p', { class: 'muted', id: 'fn-errors-kept', text: String(e.message || e) });
  }
  const s = r.store;
  const note = el('p', { class: 'muted', text: `les keeps the last ${s.per_source} error-level records per source (${s.kept} kept over ${s.sources} sources, at most ${s.max_total}; messages cut at ${s.max_message} bytes)${s.rebuilding ? '; still reading them back from the stream…' : ''}.` });
  if (r.errors.length === 0) return el('div', { id: 'fn-errors-kept' }, el('p', { text: 'No error-level log records of this function kept.' }), note);
  return el('div', { id: 'fn-errors-kept' }, table(['Time (UTC)', 'Level', 'Request id', 'Message'], r.errors.map((x) => el('tr', { dataset: { level: x.level } },
    el('td', { text: fmtStamp(Date.parse(x.timestamp)) }), el('td', { text: x.level }), el('td', { class: 'muted', text: x.request_id || '–' }),
    el('td', { class: 'msg', dataset: { col: 'message' } }, el('span', { text: x.message }), x.truncated ? el('span', { class: 'muted', text: ` … (${x.size} bytes)` }) : null))),
  { 'aria-label': 'Latest error logs', id: 'fn-errors-table' }), note);
}

// ---- Series ------------------------------------------------------------
const DIST_STATS = ['count', 'sum', 'min', 'max', 'avg', 'p50', 'p90', 'p95', 'p99', 'p99.9'];

async function seriesPage(params) {
  const st = {
    match: params.get('match') || '', name: params.get('name') || '', source: params.get('source') ?? '*',
    stat: params.get('stat') || '', step: params.get('step') || 'minute', range: params.get('range') || '24h', view: params.get('view') || 'chart',
  };
  const save = () => replaceState('series', Object.fromEntries(Object.entries(st).filter(([, v]) => v !== '')));
  const list = el('ul', { class: 'names', id: 'names', role: 'listbox', 'aria-label': 'Metric names' });
  const detail = el('div', { id: 'series-detail' });
  const search = el('input', { type: 'search', id: 'name-search', value: st.match, placeholder: 'aws.lambda', 'aria-describedby': 'names-count' });
  const count = el('span', { id: 'names-count', class: 'muted' });
  let timer = 0;
  const loadNames = async () => {
    const r = await apiJSON(`/api/v1/names?${new URLSearchParams({ match: st.match, limit: '200' })}`);
    list.replaceChildren(...r.names.map((n) => el('li', {}, el('button', {
      role: 'option', 'aria-selected': n.name === st.name ? 'true' : 'false', dataset: { name: n.name },
      on: { click: () => { st.name = n.name; st.stat = ''; st.source = '*'; save(); showSeries(); for (const b of list.querySelectorAll('button')) b.setAttribute('aria-selected', b.dataset.name === n.name ? 'true' : 'false'); } },
    }, el('span', { text: n.name }), el('span', { class: 'muted', text: `${n.kind} · ${n.sources} sources · ${n.tag_sets} tag sets` })))));
    count.textContent = `${r.names.length}${r.more ? '+' : ''} names; history ${r.history.series} series of ${r.history.max_series}${r.history.rebuilding ? ' (rebuilding from the stream…)' : ''}`;
  };
  search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(() => { st.match = search.value; save(); loadNames(); }, 200); });
  list.addEventListener('keydown', (ev) => {
    const bs = [...list.querySelectorAll('button')];
    const i = bs.indexOf(document.activeElement);
    if (ev.key === 'ArrowDown' && i < bs.length - 1) { bs[i + 1].focus(); ev.preventDefault(); }
    if (ev.key === 'ArrowUp' && i > 0) { bs[i - 1].focus(); ev.preventDefault(); }
  });

  async function showSeries() {
    if (!st.name) { detail.replaceChildren(el('p', { class: 'muted', text: 'Pick a name.' })); return; }
    const info = await apiJSON(`/api/v1/series?${new URLSearchParams({ name: st.name })}`);
    if (info.series.length === 0) { detail.replaceChildren(el('p', { class: 'error', role: 'alert', text: `No series named “${st.name}” in the history.` })); return; }
    const kind = info.series[0].kind;
    const stats = kind === 'distribution' ? DIST_STATS : ['value'];
    if (!stats.includes(st.stat) && !(kind === 'distribution' && /^p\d+(\.\d+)?$/.test(st.stat))) st.stat = kind === 'distribution' ? 'p99' : 'value';
    const sources = [...new Set(info.series.map((s) => s.source))];
    const window = info.series.find((s) => s.window === 'minute') ? 'minute' : info.series[0].window;
    const steps = ['minute', 'hour', 'day'].filter((s) => ['minute', 'hour', 'day'].indexOf(s) >= ['minute', 'hour', 'day'].indexOf(window));
    if (!steps.includes(st.step)) st.step = steps[0];
    save();
    const sel = (label, key, options, cb) => el('label', {}, label, el('select', { 'aria-label': label, id: `sel-${key}`, on: { change: (e) => { st[key] = e.target.value; save(); (cb || draw)(); } } },
      options.map(([v, t]) => el('option', { value: v, text: t, selected: v === st[key] }))));
    const custom = el('input', { id: 'custom-pct', size: 6, placeholder: 'p99.5', 'aria-label': 'Any percentile, like p99.5', value: DIST_STATS.includes(st.stat) ? '' : st.stat,
      on: { change: (e) => { if (/^p\d+(\.\d+)?$/.test(e.target.value)) { st.stat = e.target.value; save(); draw(); } } } });
    const viewBtn = (v, t) => el('button', { type: 'button', 'aria-pressed': st.view === v ? 'true' : 'false', dataset: { view: v },
      on: { click: (e) => { st.view = v; save(); for (const b of e.target.parentNode.querySelectorAll('button')) b.setAttribute('aria-pressed', b.dataset.view === v ? 'true' : 'false'); draw(); } } }, t);
    const out = el('div', { id: 'series-out' });
    detail.replaceChildren(
      el('h2', {}, el('code', { text: st.name }), ' ', el('span', { class: 'muted', text: `${kind}, ${info.series.length} series, ${window} windows` })),
      el('div', { class: 'controls' },
        sel('Source', 'source', [['*', `all ${sources.length} sources, merged`], ...sources.map((s) => [s, s === '' ? '(empty source)' : s])]),
        sel('Statistic', 'stat', stats.map((s) => [s, s])), kind === 'distribution' ? el('label', {}, 'Any percentile', custom) : null,
        sel('Step', 'step', steps.map((s) => [s, s])), sel('Range', 'range', Object.keys(RANGES).map((r) => [r, `last ${r}`])),
        el('div', { role: 'group', 'aria-label': 'View' }, viewBtn('chart', 'Chart'), ' ', viewBtn('table', 'Table'))),
      out);
    async function draw() {
      const p = { name: st.name, from: `-${st.range}`, step: st.step, merge: 'sources', centroids: '0' };
      if (st.source !== '*') p.source = st.source;
      if (st.stat.startsWith('p')) p.q = st.stat;
      const ls = await query(p);
      const val = (l) => (st.stat === 'value' ? l.value : st.stat.startsWith('p') ? pct(l, st.stat) : l[st.stat]);
      const label = `${st.stat} of ${st.name}${st.source === '*' ? ' (all sources)' : ` (${st.source})`}`;
      if (st.view === 'table') {
        out.replaceChildren(table(['Step start (UTC)', st.stat, ...(kind === 'distribution' ? ['count', 'min', 'max'] : [])],
          ls.map((l) => el('tr', {}, el('td', { text: fmtStamp(ts(l)) }), el('td', { dataset: { col: 'value' }, text: fmtNum(val(l)) }),
            ...(kind === 'distribution' ? [el('td', { text: fmtNum(l.count) }), el('td', { text: fmtNum(l.min) }), el('td', { text: fmtNum(l.max) })] : []))),
          { id: 'series-table', 'aria-label': label }));
      } else {
        out.replaceChildren(el('div', { class: 'card' }, lineChart({ title: label, series: [{ label, points: ls.map((l) => [ts(l), val(l)]) }], from: Date.now() - RANGES[st.range], to: Date.now(), full: true })));
      }
      out.dataset.rows = String(ls.length);
    }
    await draw();
  }
  main.replaceChildren(el('h1', { text: 'Series' }),
    el('div', { class: 'controls' }, el('label', { for: 'name-search' }, 'Search names'), search, count), list, detail);
  await loadNames();
  await showSeries();
}

// ---- Live tail ---------------------------------------------------------
// openTail streams /api/v1/tail into box (newest first, at most max rows);
// it is closed when the view changes or the tab is hidden.
function openTail(filter, box, max, onState) {
  let es = null;
  const open = () => {
    if (es) return;
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
    if (token) q.set('token', token);
    es = new EventSource(`/api/v1/tail?${q}`);
    es.onmessage = (ev) => {
      const { origin, item } = JSON.parse(ev.data);
      box.prepend(tailRow(origin, item));
      while (box.childElementCount > max) box.lastElementChild.remove();
    };
    es.addEventListener('skipped', (ev) => box.prepend(el('div', { class: 'muted', text: `… ${JSON.parse(ev.data).skipped} items skipped (more than 200 a second)` })));
    es.onerror = () => onState && onState('reconnecting…');
    es.onopen = () => onState && onState('live');
  };
  let paused = false;
  const close = () => { if (es) { es.close(); es = null; } };
  const vis = () => (document.hidden ? close() : paused || open());
  const dispose = () => { close(); document.removeEventListener('visibilitychange', vis); window.removeEventListener('pagehide', close); };
  document.addEventListener('visibilitychange', vis);
  window.addEventListener('pagehide', close);
  onLeave(dispose);
  open();
  return { open: () => { paused = false; open(); }, close: () => { paused = true; close(); }, dispose };
}

function tailRow(origin, it) {
  const t = new Date(it.timestamp).toISOString().slice(11, 23);
  const tags = Object.entries(it.tags || it.attrs || {}).map(([k, v]) => el('span', { class: 'tag', text: `${k}=${v}` }));
  const head = [el('span', { class: 'muted', text: `${t} ${origin} ` })];
  switch (it.type) {
    case 'log':
      return el('div', { class: `lvl-${(it.level || '').toUpperCase()}`, dataset: { type: 'log' } }, head,
        el('b', { text: `${it.level || '-'} ` }), el('span', { text: `${it.source} ` }), it.request_id ? el('span', { class: 'muted', text: `${it.request_id} ` }) : null,
        el('span', { text: it.message }), ' ', tags);
    case 'metric':
      return el('div', { dataset: { type: 'metric' } }, head, el('b', { text: it.name }), ` ${fmtNum(it.value)} ${it.kind}${it.window ? '/' + it.window : ''} `, el('span', { text: it.source + ' ' }), tags);
    case 'distribution':
      return el('div', { dataset: { type: 'distribution' } }, head, el('b', { text: it.name }),
        ` count ${fmtNum(it.count)} min ${fmtNum(it.min)} p50 ${fmtNum(pct(it, 'p50'))} p99 ${fmtNum(pct(it, 'p99'))} max ${fmtNum(it.max)} /${it.window} `, el('span', { text: it.source + ' ' }), tags);
    default:
      return el('div', { dataset: { type: it.type } }, head, el('b', { text: it.name || it.type }), ` ${it.duration_ms ?? ''} ms `, el('span', { text: it.source || '' }), ' ', tags);
  }
}

async function tailPage(params) {
  const f = { signal: params.get('signal') || '', origin: params.get('origin') || '', name: params.get('name') || '', source: params.get('source') || '', text: params.get('text') || '' };
  const box = el('div', { class: 'tail', id: 'tail', 'aria-live': 'off', 'aria-label': 'Items arriving on the stream, newest first' });
  const state = el('span', { class: 'muted', id: 'tail-state', role: 'status' });
  let tail = null;
  const start = () => { if (tail) tail.dispose(); tail = openTail(f, box, 500, (s) => { state.textContent = s; }); state.textContent = 'connecting…'; };
  const input = (key, label, ph) => el('label', {}, label, el('input', { value: f[key], placeholder: ph, id: `tail-${key}`, on: { change: (e) => { f[key] = e.target.value.trim(); replaceState('tail', Object.fromEntries(Object.entries(f).filter(([, v]) => v))); start(); } } }));
  const pause = el('button', { type: 'button', id: 'tail-pause', 'aria-pressed': 'false', on: { click: () => {
    const paused = pause.getAttribute('aria-pressed') !== 'true';
    pause.setAttribute('aria-pressed', paused ? 'true' : 'false');
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (paused) { tail.close(); state.textContent = 'paused (disconnected)'; } else { tail.open(); state.textContent = 'connecting…'; }
  } } }, 'Pause');
  main.replaceChildren(el('h1', { text: 'Live tail' }),
    el('div', { class: 'controls' }, input('signal', 'Signals', 'metrics,distributions,logs,spans'), input('origin', 'Origins', 'in,agg,rollup,derived'),
      input('name', 'Name contains', ''), input('source', 'Source contains', ''), input('text', 'Text contains', ''), pause, state),
    box);
  start();
}

// ---- Pipeline ----------------------------------------------------------
// les samples these families every 5 s and keeps the last hour
// (/api/v1/pipeline); the page starts from that and then adds its own
// samples of /metrics every 5 s while it is open.
const samples = [];
function parseProm(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m) out.set(m[1] + (m[2] || ''), Number(m[3]));
  }
  return out;
}
const FAMILIES = [
  ['Intake (items/s) by format and transport', 'les_ingest_received_total', 'rate'],
  ['Rejections (/s) by reason', 'les_ingest_rejected_total', 'rate'],
  ['UDP datagrams dropped (/s)', 'les_ingest_udp_dropped_total', 'rate'],
  ['Stream: records published (/s)', 'les_stream_published_records_total', 'rate'],
  ['Spool (bytes)', 'les_stream_spool_bytes', 'gauge'],
  ['Consumer lag (records)', 'les_consumer_lag_records', 'gauge'],
  ['Sink deliveries (items/s)', 'les_sink_delivered_items_total', 'rate'],
  ['Sink retries (/s)', 'les_sink_retries_total', 'rate'],
  ['Dead-lettered (/s)', 'les_consumer_dead_lettered_total', 'rate'],
];

async function pipelinePage() {
  const grid = el('div', { class: 'grid', id: 'pipeline' });
  const rejected = el('div', { id: 'rejected' });
  main.replaceChildren(el('h1', { text: 'Pipeline' }),
    el('p', { class: 'muted', text: 'From /metrics, sampled every 5 s by les (the last hour), then by this page while it is open.' }), grid,
    el('h2', { text: 'Last rejected inputs' }), rejected);
  const sample = async () => {
    const [text, rj] = await Promise.all([(await apiFetch('/metrics')).text(), apiJSON('/api/v1/rejected')]);
    samples.push({ t: Date.now(), m: parseProm(text) });
    while (samples.length > 720) samples.shift();
    draw();
    drawRejected(rj);
  };
  const drawRejected = (rj) => {
    const note = el('p', { class: 'muted', text: `The last ${rj.per_format} rejected inputs of each format received by this les, the first ${rj.max_bytes} bytes of each, escaped (control characters and invalid UTF-8 as \\xNN); the token is never kept.` });
    if (rj.rejected.length === 0) { rejected.replaceChildren(el('p', { text: 'Nothing rejected since les started.' }), note); return; }
    rejected.replaceChildren(table(['Time (UTC)', 'Format', 'Reason', 'Input'], rj.rejected.map((x) => el('tr', { dataset: { format: x.format, reason: x.reason } },
      el('td', { text: fmtStamp(Date.parse(x.time)) }), el('td', { text: `${x.format}/${x.transport}` }), el('td', { dataset: { col: 'reason' }, text: x.reason }),
      el('td', { class: 'msg', dataset: { col: 'input' } }, x.input === '' ? el('span', { class: 'muted', text: x.size ? `(${x.size} bytes, not kept)` : '(refused before it was read)' }) : el('code', { text: x.input }),
        x.truncated ? el('span', { class: 'muted', text: ` … (${x.size} bytes)` }) : null))),
    { 'aria-label': 'Last rejected inputs', id: 'rejected-table' }), note);
  };
  const draw = () => {
    const cards = FAMILIES.map(([title, fam, mode]) => {
      const keys = new Set();
      for (const s of samples) for (const k of s.m.keys()) if (k === fam || k.startsWith(fam + '{')) keys.add(k);
      const series = [...keys].sort().slice(0, 8).map((k) => {
        const pts = [];
        for (let i = 0; i < samples.length; i++) {
          const v = samples[i].m.get(k);
          if (v === undefined) continue;
          if (mode === 'gauge') pts.push([samples[i].t, v]);
          else if (i > 0 && samples[i - 1].m.has(k)) pts.push([samples[i].t, Math.max(0, (v - samples[i - 1].m.get(k)) / ((samples[i].t - samples[i - 1].t) / 1000))]);
        }
        return { label: k.slice(fam.length).replace(/^\{|\}$/g, '') || fam, points: pts };
      });
      const last = samples.length ? samples[samples.length - 1].m : new Map();
      const now = [...keys].reduce((a, k) => a + (last.get(k) || 0), 0);
      return el('div', { class: 'card', dataset: { family: fam } }, el('h2', { text: title }),
        el('div', { class: 'muted', dataset: { total: fam }, text: `${mode === 'rate' ? 'total so far' : 'now'}: ${fmtNum(now)}` }),
        series.some((x) => x.points.length) ? lineChart({ title, series, height: 160, from: Date.now() - 3600e3, to: Date.now() }) : el('p', { class: 'muted', text: samples.length < 2 && mode === 'rate' ? 'Collecting: the first rate comes with the next sample (5 s).' : 'Nothing yet.' }));
    });
    grid.replaceChildren(...cards);
  };
  if (samples.length === 0) {
    try {
      const h = await apiJSON('/api/v1/pipeline');
      for (const x of h.samples || []) samples.push({ t: x.t, m: new Map(Object.entries(x.m)) });
    } catch (e) { /* an older les without the endpoint: the page samples alone */ }
  }
  await sample();
  const timer = setInterval(() => { if (!document.hidden) sample().catch((e) => setStatus(String(e.message))); }, 5000);
  onLeave(() => clearInterval(timer));
}

render();
