// Inline SVG charts for the node page: a line chart over time with threshold lines, and a
// histogram. Drawn by hand (no chart library) in a fixed viewBox that scales with its box.
// Colours come from style.css classes, so dark and light themes apply to charts too.

const SVG = 'http://www.w3.org/2000/svg'; // the SVG namespace name, not a request
const WIDTH = 640;
const HEIGHT = 240;
const PAD = { left: 44, right: 14, top: 14, bottom: 30 };

/** Creates an SVG element with attributes (presentation attributes, not styles: the page's
 * Content-Security-Policy forbids inline styles). */
function s(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** An empty chart: the <svg> with its accessible title. */
function frame(id, title) {
  const svg = s('svg', { id, class: 'chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  return svg;
}

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `value`. */
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** Horizontal grid lines with labels on the left, for values 0..max at a round step
 * (1, 2 or 5 times a power of ten; whole numbers only when `whole`). */
function yAxis(svg, max, inner, whole = false) {
  const step = Math.max(whole ? 1 : 0, niceMax(max / 5));
  for (let value = 0; value <= max + step / 1000; value += step) {
    const y = PAD.top + inner.height * (1 - value / max);
    const label = Number.isInteger(value) ? String(value) : value.toFixed(1);
    svg.append(s('line', { class: 'grid', x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y }));
    svg.append(s('text', { class: 'axis', x: PAD.left - 6, y: y + 4, 'text-anchor': 'end' }, label));
  }
}

function innerBox() {
  return { width: WIDTH - PAD.left - PAD.right, height: HEIGHT - PAD.top - PAD.bottom };
}

/**
 * A line over the last `windowMs` milliseconds.
 * points: [{ t: epoch ms, v: number|null }] oldest first (null breaks the line);
 * thresholds: [{ value, label, cls }] drawn as dashed lines (always kept on the chart).
 */
export function lineChart({ id, title, points, now, windowMs, thresholds = [], format = (v) => v.toFixed(1) }) {
  const svg = frame(id, title);
  const inner = innerBox();
  const peak = Math.max(0, ...points.map((p) => p.v ?? 0), ...thresholds.map((t) => t.value * 1.15));
  // Phi grows without bound once heartbeats stop; cap the axis so thresholds stay readable.
  const cap = Math.max(...thresholds.map((t) => t.value * 2.5), 1);
  const max = niceMax(Math.min(peak, thresholds.length ? cap : peak));
  yAxis(svg, max, inner);
  const x = (t) => PAD.left + inner.width * (1 - (now - t) / windowMs);
  const y = (v) => PAD.top + inner.height * (1 - Math.min(v, max) / max);

  // Time labels: "-5 m" ... "now".
  for (let i = 0; i <= 5; i += 1) {
    const t = now - (windowMs * (5 - i)) / 5;
    const label = i === 5 ? 'now' : `−${Math.round((now - t) / 1000)} s`;
    svg.append(s('text', { class: 'axis', x: x(t), y: HEIGHT - 8, 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle' }, label));
  }
  for (const threshold of thresholds) {
    const ty = y(threshold.value);
    svg.append(s('line', { class: `threshold ${threshold.cls}`, x1: PAD.left, x2: WIDTH - PAD.right, y1: ty, y2: ty }));
    svg.append(s('text', { class: `threshold-label ${threshold.cls}`, x: WIDTH - PAD.right - 4, y: ty - 5, 'text-anchor': 'end' }, threshold.label));
  }

  // One path; a null value (no data: not yet heard from) lifts the pen.
  let d = '';
  let pen = false;
  for (const point of points) {
    if (point.t < now - windowMs || point.v === null || point.v === undefined) { pen = false; continue; }
    d += `${pen ? 'L' : 'M'}${x(point.t).toFixed(1)},${y(point.v).toFixed(1)}`;
    pen = true;
  }
  svg.append(s('path', { class: 'series', d: d || 'M0,0', fill: 'none' }));
  const last = points.length ? points[points.length - 1] : null;
  if (last && last.v !== null && last.v !== undefined) {
    svg.append(s('circle', { class: 'series-dot', cx: x(last.t), cy: y(last.v), r: 4 }));
    svg.append(s('text', { class: 'axis value', x: PAD.left + 6, y: PAD.top + 14 }, `now ${format(last.v)}`));
  }
  if (points.length === 0) {
    svg.append(s('text', { class: 'axis', x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle' }, 'collecting samples…'));
  }
  return svg;
}

/**
 * A histogram of `values` (milliseconds) in `bins` equal bins from the smallest to the
 * largest value, with the node's declared interval marked when given.
 */
export function histogram({ id, title, values, bins = 24, marker = null }) {
  const svg = frame(id, title);
  const inner = innerBox();
  if (values.length === 0) {
    yAxis(svg, 1, inner, true);
    svg.append(s('text', { class: 'axis', x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle' }, 'waiting for heartbeats…'));
    return svg;
  }
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (marker !== null) { low = Math.min(low, marker); high = Math.max(high, marker); }
  // A small margin either side, and never a zero-width range.
  const span = Math.max(high - low, 10);
  low = Math.max(0, low - span * 0.05);
  high = low + span * 1.1;
  const width = (high - low) / bins;
  const counts = new Array(bins).fill(0);
  for (const value of values) counts[Math.min(bins - 1, Math.floor((value - low) / width))] += 1;
  const max = niceMax(Math.max(...counts));
  yAxis(svg, max, inner, true);
  const x = (value) => PAD.left + (inner.width * (value - low)) / (high - low);
  counts.forEach((n, i) => {
    if (n === 0) return;
    const barHeight = (inner.height * n) / max;
    svg.append(s('rect', {
      class: 'bin', x: x(low + i * width) + 1, y: PAD.top + inner.height - barHeight,
      width: Math.max(1, inner.width / bins - 2), height: barHeight,
    }, undefined));
  });
  for (let i = 0; i <= 4; i += 1) {
    const value = low + ((high - low) * i) / 4;
    svg.append(s('text', { class: 'axis', x: x(value), y: HEIGHT - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, `${Math.round(value)} ms`));
  }
  if (marker !== null) {
    svg.append(s('line', { class: 'threshold interval', x1: x(marker), x2: x(marker), y1: PAD.top, y2: PAD.top + inner.height }));
    svg.append(s('text', { class: 'threshold-label interval', x: x(marker) + 4, y: PAD.top + 12 }, 'declared interval'));
  }
  return svg;
}
