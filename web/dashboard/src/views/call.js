// One call: its numbers, its sequence timeline (per track), its transcript growing as segments finish
// (tracks side by side, hypotheses of running jobs marked partial), its jobs with attempts, errors and a
// Replay button for dead ones, its DTMF and its latest events.
//
// State is read from the REST API, then changed by the call's own event stream (/v1/events?call=<id>, one
// per track); the numbers the events do not carry (packets received) are read again every second while
// the call is live, and gaps once more shortly after a gap event, so that what is drawn is what is stored.
import { LiveStream } from '../live.js';
import { invalidate, onFrame, forget } from '../frame.js';
import { drawTimeline, jobState, COLORS } from '../timeline.js';
import { add, subtract, count } from '../ranges.js';
import { el, setText, fmtInt, fmtDuration, fmtClock, fmtAgo, fmtMs, fmtRanges, debounce } from '../util.js';

const JOB_ROWS = 200;
const ACTIVITY = 40;
const JOB_ORDER = { dead: 0, running: 1, retrying: 2, queued: 3, succeeded: 4 };

export class Track {
  constructor(id, name) {
    this.id = id;
    this.name = name;
    this.call = null;
    this.open = [];
    this.lost = [];
    this.late = [];
    this.jobs = new Map();
    this.segments = new Map();
    this.partials = [];
    this.dtmf = [];
  }

  get last() {
    return this.call ? this.call.last_sequence : 0;
  }

  job(e) {
    let j = this.jobs.get(e.job_id);
    if (!j) {
      j = { id: e.job_id, call_id: this.id, first_sequence: e.data.first, last_sequence: e.data.last, state: 'queued',
            attempts: 0, max_attempts: e.data.max_attempts ?? null, last_error: null, run_at: e.at };
      this.jobs.set(e.job_id, j);
    }
    return j;
  }

  // One event of this track's stream; what it changed ('call', 'jobs', 'transcript'), or null.
  apply(e) {
    const d = e.data;
    const c = this.call;
    switch (e.kind) {
      case 'call.state_changed': if (c) c.state = d.to; return 'call';
      case 'call.ended':
        if (c) Object.assign(c, { last_sequence: d.last_sequence, packets_received: d.packets_received, lost_packets: d.lost_packets, ended_at: e.at, end_reason: d.reason });
        return 'call';
      case 'gap.opened':
        this.open = add(this.open, d.first, d.last);
        if (c) c.last_sequence = Math.max(c.last_sequence, d.last + 1);
        return 'gaps';
      case 'gap.filled': this.open = subtract(this.open, d.sequence, d.sequence); return 'gaps';
      case 'gap.lost':
        this.open = subtract(this.open, d.first, d.last);
        this.lost = add(this.lost, d.first, d.last);
        return 'gaps';
      case 'packet.late': this.late = add(this.late, d.sequence, d.sequence); return 'gaps';
      case 'segment.cut': return 'cut';
      case 'job.claimed': Object.assign(this.job(e), { state: 'running', attempts: d.attempt, max_attempts: d.max_attempts }); return 'jobs';
      case 'job.failed': {
        const j = this.job(e);
        Object.assign(j, { last_error: d.error, attempts: d.attempt });
        if (d.next_run_at !== null) Object.assign(j, { state: 'queued', run_at: d.next_run_at });
        return 'jobs';
      }
      case 'job.succeeded': Object.assign(this.job(e), { state: 'succeeded', attempts: d.attempt, latency_ms: d.latency_ms }); return 'jobs';
      case 'job.dead': Object.assign(this.job(e), { state: 'dead', attempts: d.attempts, last_error: d.error, run_at: null }); return 'jobs';
      case 'job.replayed': Object.assign(this.job(e), { state: 'queued', attempts: 0, run_at: e.at }); return 'jobs';
      case 'job.released': Object.assign(this.job(e), { state: 'queued' }); return 'jobs';
      case 'transcript.final':
        this.segments.set(e.job_id, { job_id: e.job_id, first_sequence: d.first, last_sequence: d.last, text: d.text, start: null });
        this.partials = this.partials.filter((p) => p.job_id !== e.job_id);
        return 'transcript';
      case 'transcript.partial':
        this.partials = this.partials.filter((p) => p.job_id !== e.job_id).concat(
          { job_id: e.job_id, first_sequence: d.first, last_sequence: d.last, text: d.text, heard_s: d.heard_s, partial: true });
        return 'transcript';
      case 'dtmf': this.dtmf.push({ digit: d.data?.digit ?? '?', at: e.at, sequence: d.sequence }); return 'call';
      default: return null;
    }
  }
}

export class CallView {
  constructor(api, id) {
    this.api = api;
    this.id = id;
    this.tracks = [];
    this.streams = [];
    this.activity = [];
    this.timers = [];
    this.error = null;
    this.refreshGaps = debounce(() => this.readGaps(), 400);
    this.refreshJobs = debounce(() => this.readJobs(), 500);
    // A job that ends or starts over changes the call's AI status and job counters at once: read them
    // then rather than at the next poll.
    this.refreshCalls = debounce(() => Promise.all(this.tracks.map((t) => this.readCall(t))).catch(() => {}), 300);
  }

  mount(main) {
    this.head = el('div.callhead');
    this.timelines = el('div.timelines');
    this.transcript = el('div.transcript');
    this.jobsBox = el('div.jobs');
    this.dtmfBox = el('div.dtmf');
    this.activityBox = el('ol.activity');
    this.root = el('section.call', {},
      el('a.back', { href: '#/' }, '← calls'),
      this.head,
      el('h2', {}, 'Sequence timeline'), this.legend(), this.timelines,
      el('div.columns', {},
        el('div.col-wide', {}, el('h2', {}, 'Transcript'), this.transcript, el('h2', {}, 'Jobs'), this.jobsBox),
        el('div.col-side', {}, el('h2', {}, 'DTMF'), this.dtmfBox, el('h2', {}, 'Events'), this.activityBox)));
    main.replaceChildren(this.root);
    onFrame('call', () => this.renderCall());
    onFrame('call-jobs', () => this.renderJobs());
    onFrame('call-transcript', () => this.renderTranscript());
    this.resize = () => invalidate('call');
    window.addEventListener('resize', this.resize);
    this.start();
  }

  unmount() {
    for (const s of this.streams) s.close();
    for (const t of this.timers) clearInterval(t);
    window.removeEventListener('resize', this.resize);
    for (const key of ['call', 'call-jobs', 'call-transcript']) forget(key);
  }

  legend() {
    const chip = (color, label) => el('span.chip', {}, el('i', { style: `background:${color}` }), label);
    return el('div.legend', {},
      chip(COLORS.received, 'received'), chip(COLORS.missing, 'missing'), chip(COLORS.lost, 'lost'), chip(COLORS.late, 'late'),
      el('span.sep', {}, 'jobs:'),
      ...Object.entries(COLORS.job).map(([state, color]) => chip(color, state)));
  }

  async start() {
    try {
      await this.readTracks();
    } catch (err) {
      this.error = err.status === 404 ? `No call ${this.id}` : String(err);
      invalidate('call');
      return;
    }
    for (const t of this.tracks) {
      const stream = new LiveStream(this.api, { call: t.id }, {
        onEvent: (e) => this.onTrackEvent(t, e),
        onResync: () => this.readAll(),
      });
      stream.open();
      this.streams.push(stream);
    }
    await this.readAll();
    this.timers.push(setInterval(() => this.poll(), 1000));
  }

  // The call and, when it is one track of a stream, every track (the stream's first names them all).
  async readTracks() {
    let call = await this.api.get(`/v1/calls/${encodeURIComponent(this.id)}`);
    if (call.primary_call) call = await this.api.get(`/v1/calls/${encodeURIComponent(call.primary_call)}`);
    const named = Object.entries(call.tracks ?? {}).sort(([a], [b]) => (a === call.track ? -1 : b === call.track ? 1 : a < b ? -1 : 1));
    this.tracks = named.length ? named.map(([name, id]) => new Track(id, name)) : [new Track(call.id, '')];
  }

  async readAll() {
    await Promise.all(this.tracks.map(async (t) => {
      await Promise.all([this.readCall(t), this.readTrackGaps(t), this.readTrackJobs(t), this.readTranscript(t)]);
    }));
    for (const key of ['call', 'call-jobs', 'call-transcript']) invalidate(key);
  }

  async readCall(t) {
    const call = await this.api.get(`/v1/calls/${encodeURIComponent(t.id)}`);
    t.call = call;
    t.dtmf = (call.events ?? []).filter((e) => e.kind === 'dtmf').map((e) => ({ digit: e.data.digit, at: e.at, sequence: e.sequence }));
    invalidate('call');
  }

  async readTrackGaps(t) {
    const g = await this.api.get(`/v1/calls/${encodeURIComponent(t.id)}/gaps`);
    t.open = g.open.map(({ first, last }) => ({ first, last }));
    t.lost = g.lost.map(({ first, last }) => ({ first, last }));
    t.late = (g.late ?? []).map(({ first, last }) => ({ first, last }));
    invalidate('call');
  }

  async readTrackJobs(t) {
    const jobs = await this.api.getAll(`/v1/jobs?call_id=${encodeURIComponent(t.id)}&limit=1000`, 'jobs', 10);
    t.jobs = new Map(jobs.map((j) => [j.id, j]));
    invalidate('call-jobs');
    invalidate('call');
  }

  async readTranscript(t) {
    const tr = await this.api.get(`/v1/calls/${encodeURIComponent(t.id)}/transcript`);
    t.segments = new Map(tr.segments.map((s) => [s.job_id, s]));
    t.partials = tr.partials;
    invalidate('call-transcript');
  }

  readGaps() {
    return Promise.all(this.tracks.map((t) => this.readTrackGaps(t))).catch(() => {});
  }

  readJobs() {
    return Promise.all(this.tracks.map((t) => this.readTrackJobs(t))).catch(() => {});
  }

  // Every second: the live call's counters (no event carries them). Hypotheses come as transcript.partial.
  poll() {
    for (const t of this.tracks) {
      if (t.call?.state === 'IN_PROGRESS' || t.call?.state === 'PROCESSING_AI') this.readCall(t).catch(() => {});
    }
  }

  onTrackEvent(t, e) {
    this.activity.unshift({ e, track: t.name });
    if (this.activity.length > ACTIVITY) this.activity.length = ACTIVITY;
    const changed = t.apply(e);
    if (changed === 'gaps') this.refreshGaps();
    if (changed === 'cut') this.refreshJobs();
    if (changed === 'jobs') invalidate('call-jobs');
    if (['job.succeeded', 'job.dead', 'job.replayed'].includes(e.kind)) this.refreshCalls();
    if (changed === 'transcript') invalidate('call-transcript');
    invalidate('call');
  }

  async replay(job, button) {
    button.disabled = true;
    button.textContent = 'replaying…';
    try {
      const j = await this.api.post(`/v1/jobs/${job.id}/retry`);
      const t = this.tracks.find((x) => x.id === j.call_id) ?? this.tracks[0];
      t.jobs.set(j.id, j);
    } catch (err) {
      button.textContent = 'failed';
      button.title = String(err);
      return;
    }
    invalidate('call-jobs');
    invalidate('call');
  }

  renderCall() {
    if (this.error) {
      this.head.replaceChildren(el('p.error', {}, this.error));
      return;
    }
    const main = this.tracks[0]?.call;
    if (!main) return;
    const stat = (label, value, cls = '') => el(`div.stat${cls}`, {}, el('b', {}, value), el('span', {}, label));
    const totals = (key) => this.tracks.reduce((n, t) => n + (t.call?.[key] ?? 0), 0);
    const jobs = (key) => this.tracks.reduce((n, t) => n + (t.call?.ai.jobs[key] ?? 0), 0);
    this.head.replaceChildren(
      el('h1', {}, this.id, el(`span.badge.s-${main.state}`, {}, main.state), el(`span.badge.a-${main.ai.status}`, {}, `AI ${main.ai.status}`)),
      el('div.stats', {},
        stat('duration', fmtDuration(main.duration)),
        stat('packets', fmtInt(totals('packets_received'))),
        stat('missing now', fmtInt(totals('missing_packets')), totals('missing_packets') ? '.warn' : ''),
        stat('lost', fmtInt(totals('lost_packets')), totals('lost_packets') ? '.bad' : ''),
        stat('late', fmtInt(totals('late_packets'))),
        stat('jobs done', `${fmtInt(jobs('succeeded'))} / ${fmtInt(jobs('total'))}`),
        stat('started', fmtClock(main.created_at)),
        stat(main.ended_at ? 'ended' : 'media', main.ended_at ? `${fmtClock(main.ended_at)} (${main.end_reason})` : main.media.format)));
    this.timelines.replaceChildren(...this.tracks.map((t) => this.timeline(t)));
    for (const t of this.tracks) drawTimeline(t.canvas, { last: t.last, open: t.open, lost: t.lost, late: t.late, jobs: [...t.jobs.values()] });
    this.renderDtmf();
    this.renderActivity();
  }

  timeline(t) {
    if (!t.canvas) t.canvas = el('canvas.timeline', { dataset: { track: t.name || 'call' } });
    return el('div.track', {},
      el('div.trackhead', {}, el('b', {}, t.name || 'sequence'),
        el('span.muted', {}, ` 1 – ${fmtInt(t.last)}`),
        el('span', {}, ` · missing ${fmtRanges(t.open)} (${count(t.open)})`),
        el('span', {}, ` · lost ${fmtRanges(t.lost)} (${count(t.lost)})`),
        el('span', {}, ` · late ${count(t.late)}`)),
      t.canvas);
  }

  renderDtmf() {
    const all = this.tracks.flatMap((t) => t.dtmf);
    this.dtmfBox.replaceChildren(all.length
      ? el('div', {}, el('div.digits', {}, all.map((d) => d.digit).join('')),
        el('ul.plain', {}, all.slice(-8).map((d) => el('li', {}, `${d.digit} at ${fmtClock(d.at)}${d.sequence !== null && d.sequence !== undefined ? ` (packet ${d.sequence})` : ''}`))))
      : el('p.muted', {}, 'no DTMF'));
  }

  renderActivity() {
    if (!this.activity.length) {
      this.activityBox.replaceChildren(el('li.muted', {}, 'the events of this call from now on'));
      return;
    }
    this.activityBox.replaceChildren(...this.activity.map(({ e, track }) =>
      el('li', {}, el('span.muted', {}, fmtClock(e.at)), ' ', el(`span.kind.k-${e.kind.replace('.', '-')}`, {}, e.kind),
        track ? el('span.muted', {}, ` ${track}`) : null, ' ', el('span', {}, summarize(e)))));
  }

  renderTranscript() {
    const columns = this.tracks.map((t) => {
      const lines = [...t.segments.values()].map((s) => ({ ...s, partial: false }))
        .concat(t.partials.map((p) => ({ ...p, partial: true })))
        .sort((a, b) => a.first_sequence - b.first_sequence);
      return el('div.tcol', { dataset: { track: t.name || 'call' } },
        this.tracks.length > 1 ? el('h3', {}, t.name) : null,
        lines.length
          ? lines.map((s) => el(`p.seg${s.partial ? '.partial' : ''}`, {},
            el('span.when', {}, s.start !== null && s.start !== undefined ? fmtDuration(s.start) : `#${s.first_sequence}`),
            ' ', s.text || el('span.muted', {}, '(silence)'),
            s.partial ? el('span.tag', {}, 'partial') : null))
          : el('p.muted', {}, 'no transcript yet'));
    });
    this.transcript.replaceChildren(...columns);
    this.transcript.className = `transcript cols-${columns.length}`;
  }

  renderJobs() {
    const jobs = this.tracks.flatMap((t) => [...t.jobs.values()].map((j) => ({ j, track: t.name })));
    jobs.sort((a, b) => (JOB_ORDER[jobState(a.j)] - JOB_ORDER[jobState(b.j)]) || b.j.id - a.j.id);
    const rows = jobs.slice(0, JOB_ROWS).map(({ j, track }) => {
      const state = jobState(j);
      const action = state === 'dead'
        ? el('button.replay', { onclick: (ev) => this.replay(j, ev.currentTarget) }, 'Replay')
        : null;
      return el('tr', { dataset: { job: j.id, state } },
        el('td', {}, `#${j.id}`),
        this.tracks.length > 1 ? el('td', {}, track) : null,
        el('td.num', {}, j.first_sequence === j.last_sequence ? `${j.first_sequence}` : `${j.first_sequence}–${j.last_sequence}`),
        el('td', {}, el(`span.badge.j-${state}`, {}, state)),
        el('td.num', {}, `${j.attempts}${j.max_attempts ? ` / ${j.max_attempts}` : ''}`),
        el('td.err', { title: j.last_error ?? '' }, j.last_error ?? ''),
        el('td', {}, state === 'retrying' ? `next try ${fmtAgo(j.run_at)}` : state === 'succeeded' && j.latency_ms ? fmtMs(j.latency_ms) : ''),
        el('td', {}, action));
    });
    const head = ['job', this.tracks.length > 1 ? 'track' : null, 'sequences', 'state', 'attempts', 'last error', '', ''].filter((h) => h !== null);
    const table = jobs.length
      ? el('table.grid', {}, el('thead', {}, el('tr', {}, head.map((h) => el('th', {}, h)))), el('tbody', {}, rows))
      : el('p.muted', {}, 'no jobs yet');
    const more = el('p.muted', {}, jobs.length > JOB_ROWS ? `${JOB_ROWS} of ${fmtInt(jobs.length)} jobs shown (dead, running and retrying first)` : '');
    this.jobsBox.replaceChildren(table, more);
  }
}

function summarize(e) {
  const d = e.data;
  const range = d.first !== undefined ? (d.first === d.last ? `${d.first}` : `${d.first}–${d.last}`) : '';
  switch (e.kind) {
    case 'call.state_changed': return `${d.from} → ${d.to} (${d.reason})`;
    case 'call.ended': return d.reason;
    case 'gap.filled': return `${d.sequence} arrived${d.closed ? ', range closed' : ''}`;
    case 'packet.late': return `${d.sequence}`;
    case 'job.claimed': return `job ${e.job_id} ${range}, attempt ${d.attempt}/${d.max_attempts}`;
    case 'job.failed': return `job ${e.job_id} attempt ${d.attempt}: ${d.error}${d.next_run_at ? `, next ${fmtAgo(d.next_run_at, e.at)}` : ''}`;
    case 'job.succeeded': return `job ${e.job_id} in ${fmtMs(d.latency_ms)}`;
    case 'job.dead': return `job ${e.job_id} after ${d.attempts} attempts: ${d.error}`;
    case 'transcript.final': return `“${d.text}”`;
    case 'dtmf': return d.data?.digit ?? '';
    default: return range;
  }
}
