// Hand-written SVG line charts: no library, no HTML from strings. Every string
// shown (labels, values) goes through textContent or an attribute.
export const palette = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000', '#F0E442'];
const NS = 'http://www.w3.org/2000/svg';

function svgEl(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

// One formatter for every number: toLocaleString with options builds a new
// one per call, which made a 1,250-function table take most of a second.
const numFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 6 });

export function fmtNum(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return numFormat.format(Number(v.toPrecision(6)));
}

function fmtTime(ms, spanMs) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  const hm = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}`;
  if (spanMs > 2 * 86400e3) return `${d.getUTCMonth() + 1}/${d.getUTCDate()}`;
  return hm;
}

export function fmtStamp(ms) {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.000Z$/, 'Z');
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
  const err = (span / n) / step0;
  const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// lineChart draws series [{label, points: [[ms, value], ...]}] and returns
// a focusable element: hover (or ←/→ when focused) shows exact values.
// The drawing is sized to the screen (full: the page width; otherwise a
// grid card's), so text keeps its size.
export function lineChart({ title, series, unit = '', height, from, to, full = false }) {
  const wrap = document.createElement('div');
  wrap.className = 'chart';
  const vw = Math.max(300, Math.min(1400, window.innerWidth - 48));
  const W = Math.round(full || vw < 860 ? vw : (vw - 12) / 2 - 24);
  const H = height || Math.round(Math.min(300, Math.max(160, W * 0.3)));
  const L = 64, R = 12, T = 10, B = 24;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  let x0 = from ?? Math.min(...xs), x1 = to ?? Math.max(...xs);
  if (!(x1 > x0)) { x0 -= 30e3; x1 += 30e3; }
  let ys = all.map((p) => p[1]).filter((v) => Number.isFinite(v));
  let y0 = Math.min(0, ...ys), y1 = Math.max(...ys, 0);
  if (!(y1 > y0)) y1 = y0 + 1;
  const ticks = niceTicks(y0, y1, 4);
  y0 = Math.min(y0, ticks[0]); y1 = Math.max(y1, ticks[ticks.length - 1]);
  const sx = (x) => L + ((x - x0) / Math.max(1, x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title || 'chart'}: ${series.length} series` });
  svgEl('title', {}, svg).textContent = title || '';
  const ax = svgEl('g', { class: 'axis' }, svg);
  for (const t of ticks) {
    svgEl('line', { class: 'grid-line', x1: L, x2: W - R, y1: sy(t), y2: sy(t) }, ax);
    const tx = svgEl('text', { x: L - 6, y: sy(t) + 4, 'text-anchor': 'end' }, ax);
    tx.textContent = fmtNum(t) + unit;
  }
  const xt = 5;
  for (let i = 0; i <= xt; i++) {
    const x = x0 + ((x1 - x0) * i) / xt;
    const tx = svgEl('text', { x: sx(x), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === xt ? 'end' : 'middle' }, ax);
    tx.textContent = fmtTime(x, x1 - x0);
  }
  series.forEach((s, i) => {
    const color = s.color || palette[i % palette.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length === 1) {
      svgEl('circle', { cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 3, fill: color }, svg);
    } else if (pts.length > 1) {
      const d = pts.map((p, j) => `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
      svgEl('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, 'stroke-dasharray': i >= 4 ? '5 3' : '' }, svg);
    }
  });
  const hover = svgEl('line', { class: 'hover-line', y1: T, y2: H - B, visibility: 'hidden' }, svg);
  wrap.appendChild(svg);
  const tip = document.createElement('div');
  tip.className = 'tip';
  tip.hidden = true;
  wrap.appendChild(tip);
  const legend = document.createElement('div');
  legend.className = 'legend';
  series.forEach((s, i) => {
    const sp = document.createElement('span');
    sp.style.setProperty('--sw', s.color || palette[i % palette.length]);
    sp.textContent = s.label;
    legend.appendChild(sp);
  });
  wrap.appendChild(legend);

  // Hover: the nearest timestamp over every series.
  const times = [...new Set(xs)].sort((a, b) => a - b);
  let cur = -1;
  const show = (idx) => {
    if (idx < 0 || idx >= times.length) { hide(); return; }
    cur = idx;
    const t = times[idx];
    const X = sx(t);
    hover.setAttribute('x1', X); hover.setAttribute('x2', X); hover.setAttribute('visibility', 'visible');
    const lines = [fmtStamp(t)];
    for (const s of series) {
      const p = s.points.find((q) => q[0] === t);
      if (p) lines.push(`${s.label}: ${fmtNum(p[1])}${unit}`);
    }
    tip.textContent = lines.join('\n');
    tip.hidden = false;
    const rect = svg.getBoundingClientRect();
    const px = (X / W) * rect.width;
    tip.style.left = `${Math.min(px + 10, Math.max(0, rect.width - 200))}px`;
    tip.style.top = '8px';
    wrap.setAttribute('aria-valuetext', lines.join(', '));
  };
  const hide = () => { hover.setAttribute('visibility', 'hidden'); tip.hidden = true; };
  svg.addEventListener('mousemove', (ev) => {
    const rect = svg.getBoundingClientRect();
    const x = ((ev.clientX - rect.left) / rect.width) * W;
    const t = x0 + ((x - L) / (W - L - R)) * (x1 - x0);
    let best = 0;
    for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
    show(best);
  });
  svg.addEventListener('mouseleave', hide);
  wrap.tabIndex = 0;
  wrap.setAttribute('role', 'group');
  wrap.setAttribute('aria-label', `${title || 'chart'} (left and right arrows show values)`);
  wrap.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowRight') { show(Math.min(times.length - 1, cur + 1)); ev.preventDefault(); }
    if (ev.key === 'ArrowLeft') { show(Math.max(0, cur < 0 ? times.length - 1 : cur - 1)); ev.preventDefault(); }
    if (ev.key === 'Escape') hide();
  });
  wrap.addEventListener('blur', hide);
  wrap.dataset.points = String(all.length);
  if (all.length === 0) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'No data in this range.';
    wrap.replaceChildren(p);
  }
  return wrap;
}
