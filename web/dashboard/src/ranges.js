// Sorted, disjoint inclusive ranges of sequences ({first, last}), changed as the events tell.

// `r` minus [first, last].
export function subtract(ranges, first, last) {
  const out = [];
  for (const r of ranges) {
    if (r.last < first || r.first > last) {
      out.push(r);
      continue;
    }
    if (r.first < first) out.push({ first: r.first, last: first - 1 });
    if (r.last > last) out.push({ first: last + 1, last: r.last });
  }
  return out;
}

// `r` with [first, last] added, merged with its neighbours.
export function add(ranges, first, last) {
  const all = [...ranges, { first, last }].sort((a, b) => a.first - b.first);
  const out = [];
  for (const r of all) {
    const prev = out[out.length - 1];
    if (prev && r.first <= prev.last + 1) prev.last = Math.max(prev.last, r.last);
    else out.push({ first: r.first, last: r.last });
  }
  return out;
}

export function count(ranges) {
  return ranges.reduce((n, r) => n + r.last - r.first + 1, 0);
}
