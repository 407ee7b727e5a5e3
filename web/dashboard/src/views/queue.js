// The AI queue: ready, retrying, running and dead jobs, throughput and AI latency, with small live charts
// (uPlot, redrawn once per reading), and the dead jobs with their Replay buttons.
import uPlot from 'uplot';
import { invalidate, onFrame, forget } from '../frame.js';
import { el, setText, fmtInt, fmtRate, fmtMs, fmtAgo } from '../util.js';

const POLL_MS = 1000;

const AXIS = { stroke: '#9aa4b2', grid: { stroke: '#2a303c', width: 1 }, ticks: { stroke: '#2a303c' } };

function chart(title, series, yLabel) {
  const box = el('div.chart', {}, el('h3', {}, title));
  const opts = {
    width: 400,
    height: 150,
    legend: { show: true },
    cursor: { show: false },
    scales: { x: { time: true } },
    axes: [{ ...AXIS }, { ...AXIS, label: yLabel, size: 50 }],
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, points: { show: false } }))],
  };
  box.plot = new uPlot(opts, [[], ...series.map(() => [])], box);
  return box;
}

export class QueueView {
  constructor(api, model) {
    this.api = api;
    this.model = model;
    this.timer = null;
    this.dead = [];
  }

  mount(main) {
    this.tiles = {};
    const tile = (key, label) => el(`div.stat.t-${key}`, {}, (this.tiles[key] = el('b', {}, '–')), el('span', {}, label));
    this.charts = [
      chart('Queue', [['ready', '#7c8799'], ['retrying', '#e0a21b'], ['running', '#3d8bfd']], 'jobs'),
      chart('Throughput', [['succeeded/s', '#2e9e5b'], ['failed attempts/s', '#d64545']], 'jobs/s'),
      chart('AI latency', [['p50', '#3d8bfd'], ['p95', '#9b59d0']], 'ms'),
    ];
    this.deadBox = el('div.jobs');
    this.root = el('section.queue', {},
      el('div.stats', {}, tile('ready', 'ready'), tile('retrying', 'retrying'), tile('running', 'running'), tile('dead', 'dead'),
        tile('succeeded', 'succeeded'), tile('throughput', 'jobs/s'), tile('p50', 'AI latency p50'), tile('p95', 'AI latency p95'),
        tile('oldest', 'oldest wait')),
      el('div.charts', {}, this.charts),
      el('h2', {}, 'Dead jobs'), this.deadBox);
    main.replaceChildren(this.root);
    onFrame('queue', () => this.render());
    this.resize = () => invalidate('queue');
    window.addEventListener('resize', this.resize);
    this.poll();
    this.readDead();
  }

  unmount() {
    clearTimeout(this.timer);
    window.removeEventListener('resize', this.resize);
    for (const c of this.charts) c.plot.destroy();
    forget('queue');
  }

  async poll() {
    try {
      const counts = await this.api.get('/v1/queue');
      this.model.sample(counts, Date.now() / 1000);
      this.chartsDirty = true;
      invalidate('queue');
    } catch (err) {
      console.warn('queue poll', err);
    }
    if (this.root.isConnected) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async readDead() {
    try {
      const page = await this.api.get('/v1/jobs?state=dead&limit=50');
      this.dead = page.jobs;
      this.deadDirty = true;
      invalidate('queue');
    } catch (err) {
      console.warn('dead jobs', err);
    }
  }

  // A job died or was replayed: the list of dead ones is read again.
  onEvent(e) {
    if (e.kind === 'job.dead' || e.kind === 'job.replayed') {
      clearTimeout(this.deadTimer);
      this.deadTimer = setTimeout(() => this.readDead(), 300);
    }
  }

  async replay(job, button) {
    button.disabled = true;
    button.textContent = 'replaying…';
    try {
      await this.api.post(`/v1/jobs/${job.id}/retry`);
      await this.readDead();
    } catch (err) {
      button.textContent = 'failed';
      button.title = String(err);
    }
  }

  render() {
    const m = this.model;
    const c = m.counts;
    if (c) {
      for (const key of ['ready', 'retrying', 'running', 'dead', 'succeeded']) setText(this.tiles[key], fmtInt(c[key]));
      setText(this.tiles.oldest, c.oldest_due_s === null ? '–' : fmtMs(c.oldest_due_s * 1000));
    }
    setText(this.tiles.throughput, fmtRate(m.throughput));
    setText(this.tiles.p50, fmtMs(m.p50));
    setText(this.tiles.p95, fmtMs(m.p95));
    if (this.chartsDirty) this.renderCharts();
    if (this.deadDirty) this.renderDead();
  }

  renderCharts() {
    this.chartsDirty = false;
    const s = this.model.samples;
    // Three side by side: the row's width less two gaps (12 px) and each box's padding and border (18 px).
    const width = Math.max(260, Math.floor((this.root.clientWidth - 2 * 12 - 3 * 18) / 3));
    const data = [[s.t, s.ready, s.retrying, s.running], [s.t, s.done, s.failed], [s.t, s.p50, s.p95]];
    this.charts.forEach((box, i) => {
      if (box.plot.width !== width) box.plot.setSize({ width, height: 150 });
      box.plot.setData(data[i]);
    });
  }

  renderDead() {
    this.deadDirty = false;
    if (!this.dead.length) {
      this.deadBox.replaceChildren(el('p.muted', {}, 'no dead jobs'));
      return;
    }
    this.deadBox.replaceChildren(el('table.grid', {},
      el('thead', {}, el('tr', {}, ['job', 'call', 'sequences', 'attempts', 'last error', 'died', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, this.dead.map((j) => el('tr', { dataset: { job: j.id } },
        el('td', {}, `#${j.id}`),
        el('td', {}, el('a', { href: `#/call/${encodeURIComponent(j.call_id)}` }, j.call_id)),
        el('td.num', {}, j.first_sequence === j.last_sequence ? `${j.first_sequence}` : `${j.first_sequence}–${j.last_sequence}`),
        el('td.num', {}, `${j.attempts} / ${j.max_attempts}`),
        el('td.err', { title: j.last_error ?? '' }, j.last_error ?? ''),
        el('td', {}, fmtAgo(j.finished_at)),
        el('td', {}, el('button.replay', { onclick: (ev) => this.replay(j, ev.currentTarget) }, 'Replay')))))));
  }
}
