// The nodes sharing the store (GET /v1/nodes): on PostgreSQL every node connected to the database and any
// that still holds leases of running jobs; on SQLite this node alone. Read every two seconds while open.
import { el, fmtInt, fmtAgo, fmtClock } from '../util.js';

const POLL_MS = 2000;

export class NodesView {
  constructor(api) {
    this.api = api;
    this.timer = null;
  }

  mount(main) {
    this.box = el('div');
    this.root = el('section.nodes', {}, this.box);
    main.replaceChildren(this.root);
    this.poll();
  }

  unmount() {
    clearTimeout(this.timer);
  }

  async poll() {
    try {
      this.render(await this.api.get('/v1/nodes'));
    } catch (err) {
      this.box.replaceChildren(el('p.error', {}, String(err)));
    }
    if (this.root.isConnected) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  render(n) {
    const self = n.this_node;
    const shared = n.backend === 'postgresql';
    const stat = (label, value) => el('div.stat', {}, el('b', {}, value), el('span', {}, label));
    this.box.replaceChildren(
      el('p', {}, shared
        ? `PostgreSQL: ${n.nodes.filter((x) => x.connected).length} node(s) connected to the database share the calls, the job queue and the event log.`
        : 'Embedded SQLite: this node alone owns the database file (run several nodes on PostgreSQL to share the work).'),
      el('table.grid.nodes-table', {},
        el('thead', {}, el('tr', {}, ['node', 'connected', 'since', 'address', 'running jobs'].map((h) => el('th', {}, h)))),
        el('tbody', {}, n.nodes.map((x) => el(`tr${x.connected ? '' : '.gone'}`, { dataset: { node: x.name } },
          el('td', {}, x.name, x.self ? el('span.tag', {}, 'this node') : null),
          el('td', {}, x.connected ? 'yes' : 'no (its leases expire)'),
          el('td', {}, x.connected_since ? `${fmtClock(x.connected_since)} (${fmtAgo(x.connected_since)})` : '–'),
          el('td', {}, x.address ?? '–'),
          el('td.num', {}, fmtInt(x.running_jobs)))))),
      el('h2', {}, `This node: ${self.name}`),
      el('div.stats', {},
        stat('engine', self.engine), stat('workers', fmtInt(self.workers)), stat('AI running', fmtInt(self.ai_running)),
        stat('writer queue', `${fmtInt(self.writer_queue)} / ${fmtInt(self.writer_queue_limit)}`),
        stat('connections', fmtInt(self.open_connections)),
        stat('event subscribers', self.event_subscribers === null ? '–' : `${fmtInt(self.event_subscribers)} / ${fmtInt(self.max_subscribers)}`),
        stat('up since', fmtClock(self.started_at))));
  }
}
