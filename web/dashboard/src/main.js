// The aipbx dashboard: live calls (#/), a call (#/call/<id>), the AI queue (#/queue), the nodes (#/nodes).
//
// One event stream for the whole page (the kinds the calls and the queue use; a call's page opens its
// own, filtered to that call), REST reads for the initial state and after a resync, and rendering batched
// per animation frame (frame.js).
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { Api } from './api.js';
import { LiveStream } from './live.js';
import { CallsModel } from './calls_model.js';
import { QueueModel } from './queue_model.js';
import { CallsView } from './views/calls.js';
import { CallView } from './views/call.js';
import { QueueView } from './views/queue.js';
import { NodesView } from './views/nodes.js';
import { invalidate } from './frame.js';

const KINDS = [
  'call.created', 'call.state_changed', 'call.ended', 'gap.opened', 'gap.filled', 'gap.lost', 'packet.late',
  'job.failed', 'job.succeeded', 'job.dead', 'job.replayed',
].join(',');

const api = new Api();
const calls = new CallsModel();
const queue = new QueueModel();
const main = document.getElementById('main');
const status = document.getElementById('live');
let view = null;
let viewName = '';

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, ...rest] = hash.split('/');
  if (view) view.unmount();
  if (name === 'call' && rest.length) {
    viewName = 'calls';
    view = new CallView(api, decodeURIComponent(rest.join('/')));
  } else if (name === 'queue') {
    viewName = 'queue';
    view = new QueueView(api, queue);
  } else if (name === 'nodes') {
    viewName = 'nodes';
    view = new NodesView(api);
  } else {
    viewName = 'calls';
    view = new CallsView(api, calls);
  }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === viewName);
  view.mount(main);
}

function showStatus(text) {
  status.textContent = text;
  status.className = `live ${text}`;
}

const stream = new LiveStream(api, { kind: KINDS }, {
  onEvent(e) {
    if (calls.apply(e)) invalidate('calls');
    queue.apply(e);
    view?.onEvent?.(e);
  },
  // Events were skipped (a resume notice, events pruned): the open view reads its state again.
  onResync() {
    if (view instanceof CallsView) view.poll();
  },
  onStatus: showStatus,
});

// A 401 from any request: ask for a token, then start again with it.
const dialog = document.getElementById('token-dialog');
api.onUnauthorized = () => {
  if (!dialog.open) dialog.showModal();
};
dialog.querySelector('form').addEventListener('submit', () => {
  api.setToken(dialog.querySelector('input').value.trim());
  location.reload();
});

window.addEventListener('hashchange', route);
route();
stream.open();
