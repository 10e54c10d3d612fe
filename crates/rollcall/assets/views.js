// The dashboard's pages other than the grid: one node, the events timeline, checks and
// incidents. Each view function fills `container` and returns hooks for the router:
// { transition(event) for each live transition, nodes() after a node list refresh,
//   destroy() when the page is left (stops its timers) }.

import { h, getJSON, duration, when, badge, count } from './app.js';
import { lineChart, histogram } from './charts.js';

/** The node page shows this much history (the monitor's curve goes back as far). */
const WINDOW_MS = 5 * 60_000;
/** The monitor's phi curve is fetched again this often while the node page is open. */
const CURVE_MS = 2_000;
/** Phi levels drawn as threshold lines when the node detail does not report its own (an
 * older monitor): the defaults (`[phi] suspect_threshold` and `threshold`). */
const PHI_SUSPECT = 3;
const PHI_DOWN = 8;
/** Most rows the events timeline keeps. */
const MAX_EVENTS = 500;
/** Checks and incidents are fetched again this often (and after each related transition). */
const REFRESH_MS = 10_000;

/** Shows an error in place of a view's content. */
function failure(element, error) {
  element.replaceChildren(h('p', { class: 'error' }, String(error.message || error)));
}

/** A table with a header row. */
function table(headers, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, headers.map((name) => h('th', {}, name)))),
    h('tbody', {}, rows));
}

/** A link to a node's page. */
const nodeLink = (id) => h('a', { href: `#/node/${encodeURIComponent(id)}` }, id);

/** One transition as a table row, newest-first tables put these at the top. */
function eventRow(event) {
  const subject = event.kind === 'node' ? nodeLink(event.node) : h('span', {}, `check ${event.node}`);
  return h('tr', { 'data-event': event.id },
    h('td', { class: 'time' }, new Date(event.at).toLocaleString()),
    h('td', {}, subject),
    h('td', {}, badge(event.from), ' → ', badge(event.to)),
    h('td', {}, event.reason + exitDetail(event)),
    h('td', { class: 'num' }, event.generation));
}

/** How a watched process ended, after `process-exited`: " (signal 9)", " (exit code 3)". */
function exitDetail(event) {
  if (event.exit_signal != null) return ` (signal ${event.exit_signal})`;
  if (event.exit_code != null) return ` (exit code ${event.exit_code})`;
  return '';
}

/**
 * The newest `n` transitions (newest first). The API pages oldest first from `since` and
 * has no "newest N" option, so this finds the newest id by galloping then bisecting over
 * `since` (about 2·log2(id) tiny requests), then reads the last page.
 */
async function newestEvents(n) {
  const exists = async (since) => (await getJSON(`/v1/events?since=${since}&limit=1`)).length > 0;
  if (!(await exists(0))) return [];
  let low = 0; // some event has an id above `low`...
  let high = 1; // ...and none above `high`, once the gallop ends
  while (await exists(high)) { low = high; high *= 2; }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await exists(middle)) low = middle; else high = middle;
  }
  const page = await getJSON(`/v1/events?since=${Math.max(0, high - n)}&limit=${n}`);
  return page.reverse();
}

// ---------------------------------------------------------------------------------------
// One node: facts, sampled charts, transition history.

export function nodeView(container, id) {
  const title = h('h1', {}, id, ' ', h('span', { id: 'node-state' }));
  const facts = h('dl', { class: 'facts' });
  const phiBox = h('figure', { class: 'chart-box' });
  const gapBox = h('figure', { class: 'chart-box' });
  const note = h('p', { class: 'note' });
  const history = h('div', { class: 'history' }, h('p', { class: 'muted' }, 'Loading transitions…'));
  container.append(
    h('p', {}, h('a', { href: '#/' }, '‹ all nodes')),
    title, facts,
    h('div', { class: 'charts' }, phiBox, gapBox), note,
    h('h2', {}, 'Transitions'), history);

  /** The detector's level: { t: epoch ms, v }, from the monitor's curve (GET
   * /v1/nodes/ID/phi, rebuilt by the monitor from the detector's window), with this page's
   * own samples appended between two fetches of the curve. */
  let levels = [];
  /** Where `levels` came from: 'server' once the monitor's curve arrived. */
  let levelSource = 'page';
  let curveTimer = null;
  /** Inter-arrival times seen while the page is open: { t, ms }. */
  const gaps = [];
  let previous = null;
  let pollMs = 500;
  let timer = null;
  let stopped = false;
  let events = [];
  let isPhi = true;
  /** What the node's settings promise (GET /v1/nodes/ID/explain): the same two numbers as
   * `rollcall explain`. */
  let promise = null;

  async function loadCurve() {
    try {
      const asked = Date.now();
      const curve = await getJSON(`/v1/nodes/${encodeURIComponent(id)}/phi`);
      if (stopped) return;
      // Ages count back from the monitor's `now`, which is (within a request) this moment:
      // anchored on the page's clock, a skew between the two clocks does not matter.
      const now = Date.now();
      const anchor = asked + (now - asked) / 2;
      const fresh = curve.points.map((p) => ({ t: anchor - p.age_ms, v: p.level }));
      const after = fresh.length ? fresh[fresh.length - 1].t : 0;
      levels = fresh.concat(levels.filter((p) => p.t > after));
      levelSource = 'server';
    } catch (error) {
      // An older monitor without the curve: keep sampling from the node detail only.
    }
    try {
      promise = await getJSON(`/v1/nodes/${encodeURIComponent(id)}/explain`);
    } catch (error) {
      promise = null;
    }
    if (!stopped) curveTimer = setTimeout(loadCurve, CURVE_MS);
  }

  async function poll() {
    let node;
    try {
      node = await getJSON(`/v1/nodes/${encodeURIComponent(id)}`);
    } catch (error) {
      if (!stopped) {
        facts.replaceChildren(h('p', { class: 'error' }, `${error.message}`));
        timer = setTimeout(poll, 2000);
      }
      return;
    }
    if (stopped) return;
    sample(node, Date.now());
    renderFacts(node);
    renderCharts(node);
    // Sample often enough to see most heartbeats one by one: half the node's interval,
    // between 100 and 500 ms.
    pollMs = Math.min(500, Math.max(100, Math.round(node.interval_ms / 2)));
    timer = setTimeout(poll, pollMs);
  }

  /** Turns one poll into samples. A heartbeat's arrival time is now − its age; between two
   * polls, the new arrivals' mean spacing is the arrival-time difference over the sequence
   * difference (exact when one heartbeat came in between, as it mostly does). */
  function sample(node, now) {
    isPhi = node.phi !== null && node.phi !== undefined;
    levels.push({ t: now, v: node.last_heartbeat_age_ms === null ? null : (isPhi ? node.phi : node.level) });
    const arrived = node.last_heartbeat_age_ms === null ? null : now - node.last_heartbeat_age_ms;
    if (previous && arrived !== null && previous.arrived !== null
        && node.generation === previous.generation && node.sequence > previous.sequence) {
      const n = node.sequence - previous.sequence;
      const mean = (arrived - previous.arrived) / n;
      if (mean > 0) for (let i = 0; i < Math.min(n, 20); i += 1) gaps.push({ t: now, ms: mean });
    }
    previous = { arrived, sequence: node.sequence, generation: node.generation };
    while (levels.length && levels[0].t < now - WINDOW_MS) levels.shift();
    while (gaps.length && gaps[0].t < now - WINDOW_MS) gaps.shift();
  }

  function renderFacts(node) {
    document.getElementById('node-state')?.replaceChildren(badge(node.state));
    const labels = Object.entries(node.labels || {});
    const rows = [
      ['State', badge(node.state)],
      ['Generation', node.generation],
      ['Sequence', count(node.sequence)],
      ['Labels', labels.length ? labels.map(([k, v]) => h('code', { class: 'label' }, `${k}=${v}`)) : '—'],
      ['Interval', duration(node.interval_ms)],
      ['Last heartbeat', node.last_heartbeat_age_ms === null ? 'never' : `${duration(node.last_heartbeat_age_ms)} ago`],
      [isPhi ? 'Phi' : 'Level', (isPhi ? node.phi : node.level)?.toFixed(2) ?? '—'],
      ['Next deadline', node.deadline_in_ms === null ? '—' : `in ${duration(node.deadline_in_ms)}`],
      ['Address', node.addr || '—'],
    ];
    if (promise) {
      const x = promise.expected;
      rows.push(['Crash declared within', h('span', { id: 'expected-detection' },
        `${(x.detect_max_ms / 1000).toFixed(2)} s (mean ${(x.detect_mean_ms / 1000).toFixed(2)} s)`)]);
      rows.push(['Expected false downs', h('span', { id: 'expected-false-downs' },
        `${x.false_downs_per_node_year.toPrecision(2)} per node-year`,
        h('span', { class: 'muted' }, ` (loss assumed ${(100 * promise.observed.loss).toPrecision(2)} %`
          + `, measured ${(100 * promise.observed.fleet_loss).toPrecision(2)} % over the fleet)`))]);
      if (promise.goal) {
        rows.push(['Goal', h('span', { id: 'goal', title: promise.goal.summary },
          promise.goal.met ? 'kept' : 'missed', ' — ', promise.goal.summary)]);
      }
    }
    facts.replaceChildren(...rows.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, value)]));
  }

  function renderCharts(node) {
    const now = Date.now();
    // The levels the monitor really judges by (node detail reports them); the defaults only
    // if an older monitor does not.
    const suspect = node.suspect_level ?? (isPhi ? PHI_SUSPECT : null);
    const down = node.down_level ?? (isPhi ? PHI_DOWN : 1);
    const word = isPhi ? 'phi' : 'level';
    const thresholds = [
      suspect === null ? null : { value: suspect, label: `suspect (${word} ${+suspect.toFixed(2)})`, cls: 'suspect' },
      { value: down, label: `down (${word} ${+down.toFixed(2)})`, cls: 'down' },
    ].filter(Boolean);
    const chart = lineChart({ id: 'phi-chart', title: isPhi ? 'Phi over time' : 'Detector level over time', points: levels, now, windowMs: WINDOW_MS, thresholds, format: (v) => v.toFixed(2) });
    chart.dataset.source = levelSource;
    chart.dataset.points = String(levels.length);
    phiBox.replaceChildren(chart,
      h('figcaption', {}, isPhi ? 'Phi over the last 5 minutes' : 'Detector level (elapsed / timeout) over the last 5 minutes'));
    // The detector's own window when it keeps one (phi accrual), else what this page saw.
    const window = node.recent_intervals_ms || [];
    const values = window.length ? window : gaps.map((g) => g.ms);
    gapBox.replaceChildren(
      histogram({ id: 'interarrival-chart', title: 'Heartbeat inter-arrival times', values, marker: node.interval_ms }),
      h('figcaption', {}, window.length
        ? `The ${count(window.length)} inter-arrival times the detector judges by`
        : `Heartbeat inter-arrival times (${count(gaps.length)} seen by this page)`));
    note.textContent = (levelSource === 'server'
      ? 'Phi over time is computed by the monitor from the detector\'s own window (its last heartbeats, '
        + `replayed through the same detector), refreshed every ${CURVE_MS / 1000} s, with this page's samples in between. `
      : `Phi over time is sampled by this page every ${pollMs} ms since it opened. `)
      + (window.length ? 'The histogram is the detector\'s own window (its last intervals; at first, two seeds drawn from the declared interval). ' : '')
      + `Threshold lines are the node's configured levels (suspect ${suspect === null ? '—' : +suspect.toFixed(2)}, down ${+down.toFixed(2)}).`;
  }

  async function loadHistory() {
    try {
      // Oldest first in pages of 1000; a node's history is short, but keep only the newest.
      let since = 0;
      for (let page = 0; page < 10; page += 1) {
        const rows = await getJSON(`/v1/events?node=${encodeURIComponent(id)}&kind=node&since=${since}&limit=1000`);
        events = events.concat(rows).slice(-MAX_EVENTS);
        if (rows.length < 1000) break;
        since = rows[rows.length - 1].id;
      }
      renderHistory();
    } catch (error) {
      failure(history, error);
    }
  }

  function renderHistory() {
    const rows = [...events].reverse().map(eventRow);
    history.replaceChildren(rows.length
      ? table(['When', 'Subject', 'Change', 'Reason', 'Gen.'], rows, { class: 'events' })
      : h('p', { class: 'muted' }, 'No transitions yet.'));
  }

  poll();
  loadCurve();
  loadHistory();
  return {
    transition(event) {
      if (event.kind !== 'node' || event.node !== id) return;
      if (events.some((known) => known.id === event.id)) return;
      events.push(event);
      renderHistory();
    },
    destroy() {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(curveTimer);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Events timeline, newest first, live.

export function eventsView(container) {
  const kind = h('select', { 'aria-label': 'Kind', onchange: () => render() },
    h('option', { value: '' }, 'nodes and checks'), h('option', { value: 'node' }, 'nodes'), h('option', { value: 'check' }, 'checks'));
  const filter = h('input', { type: 'search', placeholder: 'subject id', 'aria-label': 'Subject', oninput: () => render() });
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading events…'));
  container.append(h('h1', {}, 'Events'), h('div', { class: 'filters' }, kind, filter), list);
  let events = []; // newest first
  let loaded = false;

  function render() {
    if (!loaded) return;
    const shown = events.filter((event) => (!kind.value || event.kind === kind.value)
      && (!filter.value || event.node.toLowerCase().includes(filter.value.toLowerCase())));
    list.replaceChildren(shown.length
      ? table(['When', 'Subject', 'Change', 'Reason', 'Gen.'], shown.map(eventRow), { class: 'events', id: 'events' })
      : h('p', { class: 'muted' }, 'No transitions yet.'));
  }

  // Live events that arrive during the initial load are merged by id.
  const early = [];
  newestEvents(MAX_EVENTS).then((rows) => {
    const seen = new Set(rows.map((row) => row.id));
    events = early.filter((event) => !seen.has(event.id)).reverse().concat(rows);
    loaded = true;
    render();
  }).catch((error) => failure(list, error));

  return {
    transition(event) {
      if (!loaded) { early.push(event); return; }
      events.unshift(event);
      events.length = Math.min(events.length, MAX_EVENTS);
      render();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Checks: state, schedule, last pings and run durations.

function schedule(check) {
  const s = check.schedule || {};
  const rule = s.cron ? `cron ${s.cron}${s.timezone ? ` (${s.timezone})` : ''}` : s.period ? `every ${s.period}` : '—';
  return s.grace ? `${rule}, grace ${s.grace}` : rule;
}

function checkCard(check) {
  const pings = (check.pings || []).slice(0, 8).map((ping) => h('tr', {},
    h('td', {}, ping.signal),
    h('td', { class: 'time' }, new Date(ping.at).toLocaleString()),
    h('td', { class: 'num' }, ping.duration_ms === null ? '' : duration(ping.duration_ms)),
    h('td', { class: 'body' }, ping.body_len ? `${ping.body.slice(0, 80)}${ping.body_truncated || ping.body.length > 80 ? '…' : ''}` : '')));
  const deadline = check.deadline_in_ms === null ? '—' : `in ${duration(check.deadline_in_ms)}`;
  return h('section', { class: 'card', 'data-check': check.id, 'data-state': check.state },
    h('h2', {}, check.id, ' ', badge(check.state)),
    check.description ? h('p', { class: 'muted' }, check.description) : '',
    h('dl', { class: 'facts compact' },
      h('dt', {}, 'Schedule'), h('dd', {}, schedule(check)),
      h('dt', {}, 'Last ping'), h('dd', {}, when(check.last_ping_at)),
      h('dt', {}, 'Last success'), h('dd', {}, when(check.last_success_at)),
      h('dt', {}, 'Last outcome'), h('dd', {}, check.last_outcome || '—'),
      h('dt', {}, 'Deadline'), h('dd', {}, deadline),
      h('dt', {}, 'Runs open'), h('dd', {}, check.open_runs)),
    pings.length ? table(['Signal', 'At', 'Run took', 'Body'], pings, { class: 'pings' }) : h('p', { class: 'muted' }, 'No pings yet.'));
}

export function checksView(container) {
  const list = h('div', { class: 'cards' }, h('p', { class: 'muted' }, 'Loading checks…'));
  container.append(h('h1', {}, 'Checks'), list);
  return polled(async () => {
    const checks = await getJSON('/v1/checks');
    const rank = { down: 0, new: 1, up: 2, paused: 3 };
    checks.sort((a, b) => (rank[a.state] ?? 9) - (rank[b.state] ?? 9) || a.id.localeCompare(b.id));
    list.replaceChildren(...(checks.length ? checks.map(checkCard)
      : [h('p', { class: 'muted' }, 'No checks: add [[check]] to the config, or POST /v1/checks.')]));
  }, list, (event) => event.kind === 'check');
}

// ---------------------------------------------------------------------------------------
// Incidents: open first, then recent.

export function incidentsView(container) {
  const list = h('div', {}, h('p', { class: 'muted' }, 'Loading incidents…'));
  container.append(h('h1', {}, 'Incidents'), list);
  /** id -> incident; `source` says whether the row was last set by the API or the stream. */
  const byId = new Map();
  let loaded = false;

  function render() {
    const all = [...byId.values()].sort((a, b) =>
      (a.resolved_at ? 1 : 0) - (b.resolved_at ? 1 : 0) || b.id - a.id).slice(0, 200);
    const rows = all.map((incident) => h('tr', {
      'data-incident': incident.id, 'data-subject': incident.subject, 'data-source': incident.source,
      class: incident.resolved_at ? 'resolved' : 'open',
    },
      h('td', { class: 'num' }, incident.id),
      h('td', {}, incident.resolved_at ? 'resolved' : h('strong', {}, 'open'),
        incident.silenced_by ? h('span', { class: 'muted' }, ` (silenced by #${incident.silenced_by})`) : ''),
      h('td', {}, h('span', { class: 'severity', 'data-severity': incident.severity }, incident.severity)),
      h('td', {}, incident.subject_kind === 'node' ? nodeLink(incident.subject) : `${incident.subject_kind} ${incident.subject}`,
        incident.members?.length > 1 ? h('span', { class: 'muted' }, ` (+${incident.members.length - 1} more)`) : ''),
      h('td', {}, incident.kind, incident.change ? h('span', { class: 'muted' }, ` (last: ${incident.change})`) : ''),
      h('td', { class: 'time' }, when(incident.started_at)),
      h('td', { class: 'time' }, incident.resolved_at
        ? `after ${duration(new Date(incident.resolved_at) - new Date(incident.started_at))}` : '—'),
      h('td', { class: 'num' }, incident.notifications)));
    const openCount = all.filter((incident) => !incident.resolved_at).length;
    list.replaceChildren(
      h('p', { class: openCount ? 'alert' : 'muted' }, openCount ? `${openCount} open` : 'Nothing open.'),
      rows.length ? table(['#', 'Status', 'Severity', 'Subject', 'Kind', 'Started', 'Resolved', 'Notices'], rows, { class: 'incidents' }) : '');
  }

  const hooks = polled(async () => {
    const [open, recent] = await Promise.all([getJSON('/v1/incidents?open=true&limit=200'), getJSON('/v1/incidents?limit=100')]);
    for (const incident of [...recent, ...open]) {
      const known = byId.get(incident.id);
      // The stream may be ahead of a response that was in flight: never step back.
      if (known && known.source === 'stream' && (known.notifications > incident.notifications
        || (known.resolved_at && !incident.resolved_at))) continue;
      byId.set(incident.id, { ...incident, source: 'api' });
    }
    loaded = true;
    render();
  }, list, () => false);
  return {
    ...hooks,
    /** An incident change from the live stream: the row changes at once, no request. */
    incident(event) {
      if (!event.incident) return;
      byId.set(event.incident.id, { ...event.incident, change: event.change, source: 'stream' });
      if (loaded) render();
    },
  };
}

/** Runs `load` now, every REFRESH_MS, and shortly after each transition `wanted` accepts
 * (incidents and check state are committed with the transition that caused them). */
function polled(load, element, wanted) {
  const run = () => load().catch((error) => failure(element, error));
  run();
  const timer = setInterval(run, REFRESH_MS);
  let soon = null;
  return {
    transition(event) {
      if (!wanted(event) || soon !== null) return;
      soon = setTimeout(() => { soon = null; run(); }, 300);
    },
    destroy() {
      clearInterval(timer);
      clearTimeout(soon);
    },
  };
}
