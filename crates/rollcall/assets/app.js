// rollcall dashboard: the shared state, the live stream, the router and the node grid.
//
// Plain JavaScript modules, no framework and no build step: the monitor embeds these files
// in its binary and serves them at /assets/. Everything shown comes from the JSON API:
//   GET /v1/nodes            the full list (at start, then every 10 s as a safety net)
//   GET /v1/cluster          the cluster strip, every 5 s (cluster.js; hidden without [cluster])
//   GET /v1/events/stream    Server-Sent Events, one `transition` event per state change
//                            and one `incident` event per incident change (opened,
//                            reminded, flapping, resolved, ...), in one id sequence;
//                            EventSource resumes by itself with Last-Event-ID.
// Views are chosen by the URL fragment: #/, #/node/ID, #/events, #/checks, #/incidents.
//
// Readable with 10,000 nodes: the grid never renders more than PAGE_SIZE tiles. Above the
// tiles, a strip aggregates every group (`group` label) with its count per state, so a wall
// screen shows the whole fleet at a glance; filters (state, group, label k=v, id) and pages
// narrow the tiles. Problems sort first, so a down node is on page one.

import { nodeView, eventsView, checksView, incidentsView } from './views.js';
import { watchCluster } from './cluster.js';

/** Node states in the order the page lists them. */
export const STATES = ['up', 'suspect', 'down', 'new', 'paused', 'left'];
/** Sort rank of each state when problems come first. */
const RANK = { down: 0, suspect: 1, new: 2, paused: 3, left: 4, up: 5 };
/** Most tiles on one page of the grid. */
const PAGE_SIZE = 500;
/** Most group cards in the aggregate strip (the rest are counted in one line). */
const MAX_GROUPS = 48;
/** The full node list is fetched again this often, in case the stream missed something. */
const REFRESH_MS = 10_000;
/** Re-rendering after stream events is coalesced to at most once per this many ms. */
const RENDER_MS = 500;

// ---------------------------------------------------------------------------------------
// Small helpers shared by every view.

/** GET a JSON document from the monitor; throws with the path and status on failure. */
export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

/**
 * Creates an element: h('a', { class: 'tile', href: '#/', 'data-node': id }, 'text', child).
 * Attributes starting with `on` become event listeners; null/false attributes are skipped.
 * Text goes through text nodes, never innerHTML, so node names cannot inject markup.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** "850 ms", "4.2 s", "3 m 10 s", "2 h 5 m", "3 d 4 h". */
export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const sign = ms < 0 ? '−' : '';
  ms = Math.abs(ms);
  if (ms < 1000) return `${sign}${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${sign}${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${sign}${m} m ${Math.floor(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${sign}${hours} h ${m % 60} m`;
  return `${sign}${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** An RFC 3339 time as local time, with how long ago it was. */
export function when(iso) {
  if (!iso) return '—';
  const at = new Date(iso);
  return `${at.toLocaleString()} (${duration(Date.now() - at.getTime())} ago)`;
}

/** A state badge: coloured by the same classes as the tiles. */
export function badge(state) {
  return h('span', { class: 'badge', 'data-state': state }, state);
}

/** Number with thousands separators. */
export const count = (n) => n.toLocaleString();

// ---------------------------------------------------------------------------------------
// Shared state: the node table and the live stream.

export const store = {
  /** id -> node as GET /v1/nodes shows it, with `state` kept current by the stream. */
  nodes: new Map(),
  loaded: false,
  error: null,
  /** Transitions received while a /v1/nodes fetch is in flight, re-applied on its result. */
  buffer: null,
  inflight: null,
};

/** The view on screen: { transition?(event), incident?(event), nodes?(), destroy?() }. */
let current = null;

/** Applies a node transition to a node table. Returns false when the node is unknown. */
function applyTo(nodes, event) {
  if (event.kind !== 'node') return true;
  const node = nodes.get(event.node);
  if (!node) return false;
  // A transition of an older generation says nothing about the node as it is now.
  if (event.generation < node.generation) return true;
  node.state = event.to;
  node.generation = event.generation;
  node.changed_at = Date.now();
  return true;
}

/**
 * Fetches the full node list. Transitions that arrive while the request is in flight are
 * applied again to the result: a node's state is its last transition's `to`, so replaying
 * them in order can never leave an older state on screen.
 */
export function refreshNodes() {
  if (store.inflight) return store.inflight;
  store.buffer = [];
  store.inflight = getJSON('/v1/nodes')
    .then((list) => {
      const next = new Map(list.map((node) => [node.id, node]));
      for (const event of store.buffer) applyTo(next, event);
      store.nodes = next;
      store.loaded = true;
      store.error = null;
    })
    .catch((error) => {
      store.error = String(error.message || error);
    })
    .finally(() => {
      store.buffer = null;
      store.inflight = null;
      current?.nodes?.();
    });
  return store.inflight;
}

/** The id of the last event received, to resume a stream we had to re-create. */
let lastEventId = null;

/** Opens the live stream. EventSource reconnects (with Last-Event-ID) by itself after a
 * network error; only when it gives up (CLOSED) do we make a new one, from `since`. */
function connect() {
  const url = lastEventId === null ? '/v1/events/stream' : `/v1/events/stream?since=${lastEventId}`;
  const source = new EventSource(url);
  source.addEventListener('open', () => {
    setLive('live');
    // Anything may have changed while we were away.
    refreshNodes();
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive('offline');
      setTimeout(connect, 3000);
    } else {
      setLive('reconnecting');
    }
  });
  source.addEventListener('transition', (message) => {
    counted(message);
    const event = JSON.parse(message.data);
    store.buffer?.push(event);
    if (!applyTo(store.nodes, event)) refreshNodes(); // a node we have not seen yet
    current?.transition?.(event);
  });
  source.addEventListener('incident', (message) => {
    counted(message);
    current?.incident?.(JSON.parse(message.data));
  });
}

/** Notes an event's id and counts it where people (and the browser test) can see that the
 * stream is flowing. */
function counted(message) {
  lastEventId = message.lastEventId || lastEventId;
  const live = document.getElementById('live');
  const key = message.type === 'incident' ? 'incidents' : 'events';
  live.dataset[key] = Number(live.dataset[key] || 0) + 1;
  live.title = `Live updates from /v1/events/stream: ${live.dataset.events || 0} transitions and `
    + `${live.dataset.incidents || 0} incident changes received, last id ${lastEventId}`;
}

function setLive(state) {
  const element = document.getElementById('live');
  element.dataset.live = state;
  element.textContent = state;
}

// ---------------------------------------------------------------------------------------
// Router.

/** Splits '#/node/web-1?x=1' into ['node', 'web-1'] and URLSearchParams. */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

function route() {
  current?.destroy?.();
  const container = document.getElementById('view');
  container.replaceChildren();
  const { parts, params } = parseHash();
  const name = parts[0] || 'grid';
  for (const link of document.querySelectorAll('nav a')) {
    link.classList.toggle('active', link.dataset.view === name);
  }
  switch (name) {
    case 'node': current = nodeView(container, parts.slice(1).join('/')); break;
    case 'events': current = eventsView(container); break;
    case 'checks': current = checksView(container); break;
    case 'incidents': current = incidentsView(container); break;
    default: current = gridView(container, params);
  }
  document.title = `rollcall · ${name === 'grid' ? 'nodes' : name}`;
}

// ---------------------------------------------------------------------------------------
// The grid of nodes.

/** Everything the grid's filters can say, read from and written to the URL fragment so a
 * wall screen can be pointed at a filtered view. */
function readFilters(params) {
  return {
    state: params.get('state') || '',
    group: params.get('group') ?? '',
    label: params.get('label') || '',
    q: params.get('q') || '',
    sort: params.get('sort') || 'problems',
    page: Math.max(0, Number(params.get('page') || 1) - 1),
  };
}

function writeFilters(filters) {
  const params = new URLSearchParams();
  for (const key of ['state', 'group', 'label', 'q']) if (filters[key]) params.set(key, filters[key]);
  if (filters.sort !== 'problems') params.set('sort', filters.sort);
  if (filters.page > 0) params.set('page', filters.page + 1);
  const query = params.toString();
  history.replaceState(null, '', query ? `#/?${query}` : '#/');
}

/** The group a node belongs to, for aggregation: its `group` label. */
const groupOf = (node) => node.labels?.group ?? '';

/** Does `node` pass every filter except (when `ignoreState`) the state filter? */
function matches(node, filters, ignoreState = false) {
  if (!ignoreState && filters.state && node.state !== filters.state) return false;
  if (filters.group !== '' && groupOf(node) !== filters.group) return false;
  if (filters.q && !node.id.toLowerCase().includes(filters.q.toLowerCase())) return false;
  if (filters.label) {
    const [key, ...rest] = filters.label.split('=');
    const value = rest.join('=');
    const has = node.labels?.[key.trim()];
    if (has === undefined || (rest.length > 0 && value.trim() !== '' && has !== value.trim())) return false;
  }
  return true;
}

function gridView(container, params) {
  const filters = readFilters(params);

  // The filter bar is built once, so typing in it is never interrupted by a re-render.
  const stateSelect = h('select', { 'aria-label': 'State', onchange: () => update({ state: stateSelect.value }) },
    h('option', { value: '' }, 'all states'),
    STATES.map((state) => h('option', { value: state }, state)));
  stateSelect.value = filters.state;
  const groupSelect = h('select', { 'aria-label': 'Group', onchange: () => update({ group: groupSelect.value }) });
  const labelInput = h('input', {
    type: 'search', placeholder: 'label k=v', value: filters.label, 'aria-label': 'Label',
    oninput: () => update({ label: labelInput.value }),
  });
  const searchInput = h('input', {
    type: 'search', placeholder: 'node id', value: filters.q, 'aria-label': 'Node id',
    oninput: () => update({ q: searchInput.value }),
  });
  const sortSelect = h('select', { 'aria-label': 'Sort', onchange: () => update({ sort: sortSelect.value }) },
    h('option', { value: 'problems' }, 'problems first'),
    h('option', { value: 'id' }, 'by id'));
  sortSelect.value = filters.sort;

  const counts = h('div', { class: 'counts', id: 'counts' });
  const groups = h('div', { class: 'groups', id: 'groups' });
  const summary = h('p', { class: 'summary muted' });
  const tiles = h('div', { class: 'tiles', id: 'tiles' });
  const pager = h('div', { class: 'pager' });
  container.append(
    counts,
    h('div', { class: 'filters' }, stateSelect, groupSelect, labelInput, searchInput, sortSelect),
    groups, summary, tiles, pager);

  /** Changes some filters, back to page one unless the page itself changed. */
  function update(change) {
    Object.assign(filters, { page: 0 }, change);
    writeFilters(filters);
    render();
  }

  function render() {
    if (!store.loaded) {
      summary.textContent = store.error ? `Cannot load nodes: ${store.error}` : 'Loading nodes…';
      return;
    }
    const all = [...store.nodes.values()];
    renderCounts(all);
    renderGroupOptions(all);
    renderGroups(all);
    renderTiles(all);
  }

  // Counts per state for the current group/label/id filters; a click filters by state.
  function renderCounts(all) {
    const byState = Object.fromEntries(STATES.map((state) => [state, 0]));
    for (const node of all) if (matches(node, filters, true)) byState[node.state] = (byState[node.state] || 0) + 1;
    const total = Object.values(byState).reduce((a, b) => a + b, 0);
    counts.replaceChildren(
      h('button', { class: 'count', 'aria-pressed': filters.state === '', onclick: () => update({ state: '' }) },
        h('strong', {}, count(total)), ' nodes'),
      ...STATES.map((state) => h('button', {
        class: 'count', 'data-state': state, 'data-count': byState[state],
        'aria-pressed': filters.state === state,
        onclick: () => update({ state: filters.state === state ? '' : state }),
      }, h('strong', {}, count(byState[state])), ` ${state}`)));
  }

  function renderGroupOptions(all) {
    const names = [...new Set(all.map(groupOf))].sort();
    const wanted = ['', ...names].join('\n');
    if (groupSelect.dataset.names === wanted) return;
    groupSelect.dataset.names = wanted;
    groupSelect.replaceChildren(h('option', { value: '' }, 'all groups'),
      ...names.filter((name) => name !== '').map((name) => h('option', { value: name }, name)));
    groupSelect.value = filters.group;
  }

  // One card per group with a bar split by state: the whole fleet, however large, in a
  // screenful. Groups with problems come first.
  function renderGroups(all) {
    const table = new Map();
    for (const node of all) {
      const name = groupOf(node);
      if (!table.has(name)) table.set(name, { name, total: 0 });
      const row = table.get(name);
      row.total += 1;
      row[node.state] = (row[node.state] || 0) + 1;
    }
    if (table.size <= 1 && !filters.group) { groups.replaceChildren(); return; }
    const rows = [...table.values()].sort((a, b) =>
      ((b.down || 0) + (b.suspect || 0)) - ((a.down || 0) + (a.suspect || 0)) || a.name.localeCompare(b.name, undefined, { numeric: true }));
    const cards = rows.slice(0, MAX_GROUPS).map((row) => {
      const bar = h('span', { class: 'bar' }, STATES.filter((state) => row[state]).map((state) => {
        const part = h('span', { 'data-state': state, title: `${row[state]} ${state}` });
        part.style.flexGrow = row[state]; // CSSOM, allowed by the CSP (markup styles are not)
        return part;
      }));
      const problems = (row.down || 0) + (row.suspect || 0);
      return h('button', {
        class: 'group', 'aria-pressed': filters.group === row.name, 'data-group': row.name,
        onclick: () => update({ group: filters.group === row.name ? '' : row.name }),
      }, h('span', { class: 'name' }, row.name || '(no group)'),
      h('span', { class: 'nums' }, `${count(row.total)}`, problems ? h('b', {}, ` · ${problems} failing`) : ''),
      bar);
    });
    const more = rows.length > MAX_GROUPS ? h('p', { class: 'muted' }, `+ ${rows.length - MAX_GROUPS} more groups (choose one in the filter)`) : '';
    groups.replaceChildren(...cards, more);
  }

  function renderTiles(all) {
    const shown = all.filter((node) => matches(node, filters));
    shown.sort(filters.sort === 'id'
      ? (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true })
      : (a, b) => (RANK[a.state] ?? 9) - (RANK[b.state] ?? 9) || a.id.localeCompare(b.id, undefined, { numeric: true }));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    const page = Math.min(filters.page, pages - 1);
    const slice = shown.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    summary.textContent = shown.length === 0
      ? (all.length === 0 ? 'No nodes yet: start an agent pointed at this monitor.' : 'No node matches these filters.')
      : `Showing ${count(page * PAGE_SIZE + 1)}–${count(page * PAGE_SIZE + slice.length)} of ${count(shown.length)} nodes`
        + (pages > 1 ? ` (${PAGE_SIZE} per page)` : '');
    tiles.replaceChildren(...slice.map(tile));
    pager.replaceChildren();
    if (pages > 1) {
      pager.append(
        h('button', { disabled: page === 0, onclick: () => update({ page: page - 1 }) }, '‹ previous'),
        h('span', {}, ` page ${page + 1} of ${pages} `),
        h('button', { disabled: page >= pages - 1, onclick: () => update({ page: page + 1 }) }, 'next ›'));
    }
  }

  function tile(node) {
    const group = groupOf(node);
    return h('a', { class: 'tile', href: `#/node/${encodeURIComponent(node.id)}`, 'data-node': node.id, 'data-state': node.state, title: `${node.id}: ${node.state}` },
      h('span', { class: 'id' }, node.id),
      h('span', { class: 'state' }, node.state),
      group ? h('span', { class: 'group-label' }, group) : '');
  }

  // Live: a transition repaints its tile at once; counts, groups and order follow within
  // RENDER_MS (coalesced, so a mass failure does not re-render once per node).
  let pending = null;
  function scheduleRender() {
    if (pending === null) pending = setTimeout(() => { pending = null; render(); }, RENDER_MS);
  }
  const refresh = setInterval(refreshNodes, REFRESH_MS);
  render();
  if (!store.loaded) refreshNodes();

  return {
    transition(event) {
      if (event.kind !== 'node') return;
      const element = tiles.querySelector(`[data-node="${CSS.escape(event.node)}"]`);
      if (element) {
        element.dataset.state = event.to;
        element.querySelector('.state').textContent = event.to;
        element.title = `${event.node}: ${event.to}`;
      }
      scheduleRender();
    },
    nodes: render,
    destroy() {
      clearInterval(refresh);
      clearTimeout(pending);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Start.

window.addEventListener('hashchange', route);
connect();
refreshNodes();
route();
watchCluster(document.getElementById('cluster'));
