// The live calls the dashboard shows: rows read from GET /v1/calls (every active call, a page of 1,000 at a
// time, every couple of seconds: the counters and packets/s) and changed at once by the event stream
// (created, state, ended, gaps, late packets). `version` grows with every change, so a view knows when to
// sort again.
const ACTIVE = new Set(['IN_PROGRESS', 'PROCESSING_AI']);
const KEEP_FINISHED = 300; // finished calls kept on the list, the latest first

export class CallsModel {
  constructor() {
    this.calls = new Map();
    this.version = 0;
    this.polledAt = 0;
  }

  row(id, at) {
    let r = this.calls.get(id);
    if (!r) {
      r = {
        id, state: 'IN_PROGRESS', created_at: at, last_sequence: 0, packets_received: 0, missing_packets: 0,
        missing_ranges: 0, late_packets: 0, lost_packets: 0, duration: null, ai: 'none', rate: null,
        finished_at: null, seen: 0,
      };
      this.calls.set(id, r);
    }
    return r;
  }

  // The active calls as listed now (`at`: when the listing was read, in seconds).
  merge(listed, at) {
    const seen = new Set();
    for (const c of listed) {
      seen.add(c.id);
      const r = this.row(c.id, c.created_at);
      // The listing may have been read just before an event settled the call: the event is newer.
      if (!ACTIVE.has(r.state) && r.finished_at !== null && r.finished_at > at - 5) continue;
      if (r.seen && at > r.seen) r.rate = Math.max(0, (c.packets_received - r.packets_received) / (at - r.seen));
      r.seen = at;
      r.state = c.state;
      r.created_at = c.created_at;
      r.last_sequence = c.last_sequence;
      r.packets_received = c.packets_received;
      r.missing_packets = c.missing_packets;
      r.missing_ranges = c.missing_ranges;
      r.late_packets = c.late_packets;
      r.lost_packets = c.lost_packets;
      r.duration = c.duration;
      r.ai = c.ai.status;
      r.finished_at = c.ended_at;
    }
    // An active call missing from the listing has settled (its event may not have come yet): gone.
    for (const [id, r] of this.calls) if (!seen.has(id) && ACTIVE.has(r.state)) this.calls.delete(id);
    this.trimFinished();
    this.polledAt = at;
    this.version++;
  }

  trimFinished() {
    const finished = [...this.calls.values()].filter((r) => !ACTIVE.has(r.state));
    if (finished.length <= KEEP_FINISHED) return;
    finished.sort((a, b) => (b.finished_at ?? 0) - (a.finished_at ?? 0));
    for (const r of finished.slice(KEEP_FINISHED)) this.calls.delete(r.id);
  }

  // One event of the stream; true when it changed a row.
  apply(e) {
    const d = e.data;
    switch (e.kind) {
      case 'call.created':
        this.row(e.call_id, e.at);
        break;
      case 'call.state_changed': {
        const r = this.row(e.call_id, e.at);
        r.state = d.to;
        if (!ACTIVE.has(d.to)) {
          r.finished_at = e.at;
          r.rate = null;
        }
        break;
      }
      case 'call.ended': {
        const r = this.row(e.call_id, e.at);
        r.last_sequence = d.last_sequence;
        r.packets_received = d.packets_received;
        r.lost_packets = d.lost_packets;
        r.missing_packets = 0;
        r.missing_ranges = 0;
        r.rate = null;
        break;
      }
      case 'gap.opened': {
        const r = this.row(e.call_id, e.at);
        r.missing_packets += d.last - d.first + 1;
        r.missing_ranges += 1;
        r.last_sequence = Math.max(r.last_sequence, d.last + 1);
        break;
      }
      case 'gap.filled': {
        const r = this.row(e.call_id, e.at);
        r.missing_packets = Math.max(0, r.missing_packets - 1);
        if (d.closed) r.missing_ranges = Math.max(0, r.missing_ranges - 1);
        break;
      }
      case 'gap.lost': {
        const r = this.row(e.call_id, e.at);
        const n = d.last - d.first + 1;
        r.missing_packets = Math.max(0, r.missing_packets - n);
        r.missing_ranges = Math.max(0, r.missing_ranges - 1);
        r.lost_packets += n;
        break;
      }
      case 'packet.late':
        this.row(e.call_id, e.at).late_packets += 1;
        break;
      case 'job.dead':
        this.row(e.call_id, e.at).ai = 'failed';
        break;
      default:
        return false;
    }
    this.version++;
    return true;
  }

  totals() {
    const t = { live: 0, rate: 0, withGaps: 0, missing: 0, late: 0, lost: 0 };
    for (const r of this.calls.values()) {
      if (r.state !== 'IN_PROGRESS') continue;
      t.live++;
      t.rate += r.rate ?? 0;
      if (r.missing_packets > 0) t.withGaps++;
      t.missing += r.missing_packets;
      t.late += r.late_packets;
      t.lost += r.lost_packets;
    }
    return t;
  }
}

export const isActive = (state) => ACTIVE.has(state);
