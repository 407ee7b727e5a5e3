// Small DOM and formatting helpers shared by the views.

// el('div.row', {title: 'x', onclick}, child, 'text', ...): an element with classes, properties and children.
export function el(tag, props, ...children) {
  const [name, ...classes] = tag.split('.');
  const node = document.createElement(name || 'div');
  if (classes.length) node.className = classes.join(' ');
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Sets a node's text only when it changed (a write of the same text still costs a layout).
export function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

export function setClass(node, name) {
  if (node.className !== name) node.className = name;
}

// 1234567 -> "1,234,567" (by hand: toLocaleString goes through Intl, slow for a list redrawn per frame).
export function fmtInt(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  const s = String(Math.round(Math.abs(n)));
  let out = s.length > 3 ? '' : s;
  if (s.length > 3) {
    const head = s.length % 3 || 3;
    out = s.slice(0, head);
    for (let i = head; i < s.length; i += 3) out += `,${s.slice(i, i + 3)}`;
  }
  return n < 0 ? `-${out}` : out;
}

export function fmtRate(r) {
  if (r === null || r === undefined || !Number.isFinite(r)) return '–';
  return r >= 100 ? Math.round(r).toString() : r.toFixed(1);
}

// 75 -> "1:15", 3725 -> "1:02:05".
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

// A unix time as the local clock time, "14:03:27".
export function fmtClock(unix) {
  if (!unix) return '–';
  return new Date(unix * 1000).toLocaleTimeString('en-GB', { hour12: false });
}

// How long ago (or from now) a unix time is, "3 s ago" / "in 2 s".
export function fmtAgo(unix, now = Date.now() / 1000) {
  if (!unix) return '–';
  const d = now - unix;
  const a = Math.abs(d);
  const text = a < 60 ? `${Math.round(a)} s` : a < 3600 ? `${Math.round(a / 60)} min` : `${(a / 3600).toFixed(1)} h`;
  return d >= 0 ? `${text} ago` : `in ${text}`;
}

export function fmtRanges(ranges) {
  if (!ranges.length) return 'none';
  const shown = ranges.slice(0, 6).map((r) => (r.first === r.last ? `${r.first}` : `${r.first}–${r.last}`));
  return shown.join(', ') + (ranges.length > 6 ? ` … (${ranges.length} ranges)` : '');
}

// Calls `fn` at most once per `ms`, the last call's arguments winning (trailing edge).
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// The q-quantile (0..1) of an array of numbers (sorted in place).
export function quantile(values, q) {
  if (!values.length) return null;
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(q * values.length))];
}
