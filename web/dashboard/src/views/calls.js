// The live calls: totals, then one row per call in a virtualized list (only the rows in view exist in the
// page, a pool reused as it scrolls), rendered once per animation frame when something changed.
import { invalidate, onFrame, forget } from '../frame.js';
import { isActive } from '../calls_model.js';
import { el, setText, setClass, fmtInt, fmtRate, fmtDuration } from '../util.js';

const ROW_HEIGHT = 30;
const OVERSCAN = 8;
const POLL_MS = 2000;

const COLUMNS = [
  { key: 'id', label: 'call', sort: (r) => r.id },
  { key: 'state', label: 'state', sort: (r) => r.state },
  { key: 'duration', label: 'duration', sort: (r) => r.duration ?? -1, num: true },
  { key: 'rate', label: 'packets/s', sort: (r) => r.rate ?? -1, num: true },
  { key: 'packets_received', label: 'packets', sort: (r) => r.packets_received, num: true },
  { key: 'missing_packets', label: 'missing', sort: (r) => r.missing_packets, num: true },
  { key: 'late_packets', label: 'late', sort: (r) => r.late_packets, num: true },
  { key: 'lost_packets', label: 'lost', sort: (r) => r.lost_packets, num: true },
  { key: 'ai', label: 'AI', sort: (r) => r.ai },
];

function cellText(key, r) {
  switch (key) {
    case 'duration': return fmtDuration(r.duration);
    case 'rate': return isActive(r.state) ? fmtRate(r.rate) : '–';
    case 'state': return r.state;
    case 'ai': return r.ai;
    case 'id': return r.id;
    default: return fmtInt(r[key]);
  }
}

export class CallsView {
  constructor(api, model) {
    this.api = api;
    this.model = model;
    this.sortKey = 'id';
    this.sortDesc = false;
    this.filter = '';
    this.showFinished = true;
    this.order = [];
    this.orderVersion = -1;
    this.pool = [];
    this.timer = null;
  }

  mount(main) {
    this.totals = {};
    const stat = (key, label) => el('div.stat', {}, (this.totals[key] = el('b', {}, '–')), el('span', {}, label));
    const header = el('div.thead.calls-grid', {},
      COLUMNS.map((c) => el(`button.th${c.num ? '.num' : ''}`, { dataset: { key: c.key }, onclick: () => this.sortBy(c.key) }, c.label)));
    this.spacer = el('div.vspacer');
    this.rows = el('div.vrows');
    this.body = el('div.vbody', { onscroll: () => invalidate('calls') }, this.spacer, this.rows);
    this.count = el('span.muted');
    this.root = el('section.calls', {},
      el('div.stats', {}, stat('live', 'live calls'), stat('rate', 'packets/s'), stat('withGaps', 'calls with gaps'),
        stat('missing', 'missing now'), stat('late', 'late'), stat('lost', 'lost')),
      el('div.toolbar', {},
        el('input.filter', { type: 'search', placeholder: 'filter by call id', oninput: (e) => { this.filter = e.target.value; this.orderVersion = -1; invalidate('calls'); } }),
        el('label', {}, el('input', { type: 'checkbox', checked: true, onchange: (e) => { this.showFinished = e.target.checked; this.orderVersion = -1; invalidate('calls'); } }), ' show finished'),
        this.count),
      el('div.table', {}, header, this.body));
    this.header = header;
    main.replaceChildren(this.root);
    onFrame('calls', () => this.render());
    this.resize = () => invalidate('calls');
    window.addEventListener('resize', this.resize);
    this.poll();
    invalidate('calls');
  }

  unmount() {
    clearTimeout(this.timer);
    this.timer = null;
    window.removeEventListener('resize', this.resize);
    forget('calls');
  }

  // Every active call, read again every POLL_MS (packets/s comes from two reads). Called again (a resync),
  // it reads now and keeps one loop.
  async poll() {
    clearTimeout(this.timer);
    if (this.reading) return;
    this.reading = true;
    const at = Date.now() / 1000;
    try {
      const [running, ending] = await Promise.all([
        this.api.getAll('/v1/calls?state=IN_PROGRESS&limit=1000', 'calls'),
        this.api.getAll('/v1/calls?state=PROCESSING_AI&limit=1000', 'calls'),
      ]);
      this.model.merge(running.concat(ending), at);
      invalidate('calls');
    } catch (err) {
      console.warn('calls poll', err);
    }
    this.reading = false;
    if (this.root.isConnected) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDesc = !this.sortDesc;
    else {
      this.sortKey = key;
      this.sortDesc = COLUMNS.find((c) => c.key === key).num;
    }
    this.orderVersion = -1;
    invalidate('calls');
  }

  sorted() {
    if (this.orderVersion === this.model.version) return this.order;
    const col = COLUMNS.find((c) => c.key === this.sortKey);
    const needle = this.filter.trim();
    const rows = [];
    for (const r of this.model.calls.values()) {
      if (!this.showFinished && !isActive(r.state)) continue;
      if (needle && !r.id.includes(needle)) continue;
      rows.push(r);
    }
    const dir = this.sortDesc ? -1 : 1;
    rows.sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      return (x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : 1) * dir;
    });
    this.order = rows;
    this.orderVersion = this.model.version;
    return rows;
  }

  render() {
    const t = this.model.totals();
    for (const [key, node] of Object.entries(this.totals)) setText(node, key === 'rate' ? fmtRate(t.rate) : fmtInt(t[key]));
    for (const th of this.header.children)
      setClass(th, `th${COLUMNS.find((c) => c.key === th.dataset.key).num ? ' num' : ''}${th.dataset.key === this.sortKey ? (this.sortDesc ? ' desc' : ' asc') : ''}`);
    const rows = this.sorted();
    setText(this.count, `${fmtInt(rows.length)} calls`);
    // Reads first (scroll position, height), then writes: one layout per frame.
    const top = this.body.scrollTop;
    const height = this.body.clientHeight;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const count = Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN;
    const spacer = `${rows.length * ROW_HEIGHT}px`;
    if (this.spacer.style.height !== spacer) this.spacer.style.height = spacer;
    while (this.pool.length < count) this.pool.push(this.makeRow());
    // Row k of the list is always pool[k % n]: scrolling by a row moves and refills one element, not all.
    const n = this.pool.length;
    for (let k = first; k < first + n; ++k) this.fill(this.pool[k % n], rows[k], k);
  }

  makeRow() {
    const cells = COLUMNS.map((c) => el(`span.td${c.num ? '.num' : ''}`));
    const row = el('a.vrow.calls-grid', {}, cells);
    row.cells = cells;
    row.values = COLUMNS.map(() => null);
    row.classes = COLUMNS.map(() => null);
    row.shown = null;
    row.style.display = 'none';
    this.rows.append(row);
    return row;
  }

  fill(row, r, index) {
    if (!r) {
      if (row.shown !== null) {
        row.style.display = 'none';
        row.shown = null;
      }
      return;
    }
    if (row.shown === null) row.style.display = '';
    if (row.index !== index) {
      row.style.transform = `translateY(${index * ROW_HEIGHT}px)`;
      row.index = index;
    }
    if (row.shown !== r.id) {
      row.href = `#/call/${encodeURIComponent(r.id)}`;
      row.shown = r.id;
    }
    // The row remembers what it shows: only what changed is written to the page.
    for (let i = 0; i < COLUMNS.length; ++i) {
      const text = cellText(COLUMNS[i].key, r);
      if (row.values[i] !== text) row.cells[i].textContent = row.values[i] = text;
    }
    this.cellClass(row, 1, `td state s-${r.state}`);
    this.cellClass(row, 5, `td num${r.missing_packets > 0 ? ' warn' : ''}`);
    this.cellClass(row, 7, `td num${r.lost_packets > 0 ? ' bad' : ''}`);
    this.cellClass(row, 8, `td ai a-${r.ai}`);
  }

  cellClass(row, i, name) {
    if (row.classes[i] !== name) row.cells[i].className = row.classes[i] = name;
  }
}
