// A call's sequence timeline drawn on a canvas: sequences 1..last across the width, received packets in
// green, ranges missing now in amber, ranges declared lost in red, packets that came after their range was
// lost in violet; below it a strip of the AI jobs' segments coloured by their state. A range narrower than
// a pixel is still drawn one pixel wide, so one missing packet of a long call shows.
export const COLORS = {
  received: '#2e9e5b',
  missing: '#e0a21b',
  lost: '#d64545',
  late: '#9b59d0',
  none: '#3a4150',
  job: { succeeded: '#2e9e5b', running: '#3d8bfd', queued: '#7c8799', retrying: '#e0a21b', dead: '#d64545' },
};

// track: {last, open, lost, late: [{first, last}], jobs: [{first_sequence, last_sequence, state, attempts}]}
export function drawTimeline(canvas, track) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
  }
  canvas.dataset.last = String(track.last); // what the bar spans (read by the browser test)
  const ctx = canvas.getContext('2d', { willReadFrequently: false });
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const barHeight = Math.round(height * 0.62);
  const stripTop = barHeight + 4;
  const stripHeight = height - stripTop;
  const total = Math.max(track.last, 1);
  const x = (s) => ((s - 1) / total) * width;
  const span = (first, last, y, h, color) => {
    const x0 = x(first);
    const w = Math.max(1 / dpr, x(last + 1) - x0);
    ctx.fillStyle = color;
    ctx.fillRect(x0, y, w, h);
  };
  ctx.fillStyle = COLORS.none;
  ctx.fillRect(0, 0, width, barHeight);
  if (track.last > 0) span(1, track.last, 0, barHeight, COLORS.received);
  for (const r of track.open) span(r.first, r.last, 0, barHeight, COLORS.missing);
  for (const r of track.lost) span(r.first, r.last, 0, barHeight, COLORS.lost);
  for (const r of track.late) span(r.first, r.last, 0, barHeight, COLORS.late);
  for (const j of track.jobs) span(j.first_sequence, j.last_sequence, stripTop, stripHeight, COLORS.job[jobState(j)]);
}

// A job's state as the dashboard shows it: a queued job with an attempt behind it is retrying.
export function jobState(j) {
  return j.state === 'queued' && j.attempts > 0 ? 'retrying' : j.state;
}
