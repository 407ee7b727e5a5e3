// Rendering batched per animation frame: what changes marks a part of the page dirty (cheap, any number of
// times per frame); one requestAnimationFrame callback then renders each dirty part once. So a burst of
// events costs one repaint, never one per event.
const dirty = new Set();
const renderers = new Map();
let scheduled = false;

export function onFrame(key, render) {
  renderers.set(key, render);
}

export function forget(key) {
  renderers.delete(key);
  dirty.delete(key);
}

export function invalidate(key) {
  dirty.add(key);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const keys = [...dirty];
  dirty.clear();
  for (const key of keys) {
    const render = renderers.get(key);
    if (render) render();
  }
}
