// rollcall dashboard: the cluster strip under the header, from GET /v1/cluster.
//
// Shown only for a monitor configured with [cluster]: a 404 (`not_configured`) hides the
// strip for good, since a monitor's [cluster] cannot change without a restart. Otherwise it
// is fetched again every CLUSTER_MS and says who this monitor is and its role, who leads
// with which fencing token, whether etcd answers (or why not), the members, and the monitors
// cut off from the fleet (highlighted: their view is the problem, not the fleet's).
// The strip's `data-cluster` says what it last learnt (`off`, a role, or `error`), for tests
// and for styling.

import { h } from './app.js';

/** How often the strip asks /v1/cluster again. */
const CLUSTER_MS = 5_000;

/** Starts watching /v1/cluster and rendering into `strip` (the #cluster section). */
export function watchCluster(strip) {
  let timer = null;
  async function poll() {
    timer = null;
    let response;
    try {
      response = await fetch('/v1/cluster', { headers: { Accept: 'application/json' } });
    } catch (error) {
      stale(strip, `cannot load /v1/cluster: ${error.message || error}`);
      timer = setTimeout(poll, CLUSTER_MS);
      return;
    }
    if (response.status === 404) {
      strip.hidden = true;
      strip.dataset.cluster = 'off';
      return;
    }
    if (response.ok) renderCluster(strip, await response.json());
    else stale(strip, `/v1/cluster: HTTP ${response.status}`);
    timer = setTimeout(poll, CLUSTER_MS);
  }
  poll();
  return { stop: () => clearTimeout(timer) };
}

/** Keeps what the strip showed, with a line saying it may be out of date. */
function stale(strip, message) {
  strip.dataset.cluster = 'error';
  strip.querySelector('.cluster-stale')?.remove();
  strip.append(h('span', { class: 'cluster-stale error' }, message));
}

/** Most characters of etcd's error shown in the strip (the whole error is its tooltip):
 * an error names every endpoint tried, and a TLS failure's cause is long. */
const ERROR_CHARS = 160;

const brief = (text) => (text.length > ERROR_CHARS ? `${text.slice(0, ERROR_CHARS)}…` : text);

/** Shows `status` (a GET /v1/cluster document) in the strip; exported for the browser test. */
export function renderCluster(strip, status) {
  const cutOff = new Set(status.cut_off || []);
  const field = (label, ...value) => h('span', { class: 'cluster-field' }, h('span', { class: 'muted' }, label), ...value);
  const token = status.fencing_token ?? null;
  const leader = status.leader
    ? [h('strong', { id: 'cluster-leader' }, status.leader),
      token === null ? '' : h('span', { class: 'muted' }, '· fencing token'),
      token === null ? '' : h('strong', { id: 'cluster-token' }, token)]
    : [h('span', { id: 'cluster-leader', class: 'muted' }, 'none known')];
  const etcd = status.etcd_reachable
    ? h('span', { class: 'cluster-etcd', 'data-reachable': 'true' }, 'reachable')
    : h('span', { class: 'cluster-etcd error', 'data-reachable': 'false', title: status.etcd_error || '' },
      `unreachable${status.etcd_error ? `: ${brief(status.etcd_error)}` : ''}`);
  const members = (status.members || []).map((name) => h('span', {
    class: 'member',
    'data-member': name,
    'data-self': name === status.monitor,
    'data-leader': name === status.leader,
    'data-cut-off': cutOff.has(name),
    title: cutOff.has(name) ? `${name} cannot hear most of the fleet while the others can: its view is the problem` : name,
  }, name));
  // A cut-off monitor may have lost its registration too: it is still named.
  for (const name of cutOff) {
    if (!(status.members || []).includes(name)) members.push(h('span', { class: 'member', 'data-member': name, 'data-cut-off': true }, name));
  }
  strip.replaceChildren(
    field('cluster', h('strong', {}, status.name)),
    field('this monitor', h('strong', {}, status.monitor), ' ',
      h('span', { class: 'role', id: 'cluster-role', 'data-role': status.role }, status.role)),
    field('leader', ...leader),
    field('etcd', etcd),
    field('members', members.length ? h('span', { class: 'members' }, members) : h('span', { class: 'muted' }, 'none')),
    cutOff.size
      ? field('cut off', h('strong', { class: 'cluster-cut-off' }, [...cutOff].join(', ')))
      : '');
  strip.dataset.cluster = status.role;
  strip.hidden = false;
}
