// One subscription to GET /v1/events (Server-Sent Events, through the browser's EventSource).
//
// The browser resumes by itself after a network error: it reconnects with Last-Event-ID and the server
// sends what was missed. A `resume` notice is different: the server cut this subscriber because it fell
// --event-buffer events behind (or is stopping). Catching up on that backlog would only make the page later,
// so the stream is reopened from now and the page reads its state again from the REST API (`onResync`).
// A stream refused outright (401, 503: too many subscribers) is retried every few seconds.
export class LiveStream {
  // params: the query (kind, call); onEvent(e) per event; onResync() after a resume notice or a refusal;
  // onStatus(text) as the connection changes.
  constructor(api, params, { onEvent, onResync = () => {}, onStatus = () => {} }) {
    this.api = api;
    this.params = params;
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onStatus = onStatus;
    this.lastId = 0;
    this.source = null;
    this.retry = null;
    this.closed = false;
  }

  open() {
    this.closed = false;
    const source = new EventSource(this.api.eventsUrl(this.params));
    this.source = source;
    source.onopen = () => this.onStatus('live');
    source.onmessage = (m) => {
      this.lastId = Number(m.lastEventId) || this.lastId;
      this.onEvent(JSON.parse(m.data));
    };
    source.addEventListener('resume', () => this.reopen('resumed'));
    source.addEventListener('truncated', () => this.onResync());
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) this.reopen('refused');
      else this.onStatus('reconnecting');
    };
  }

  // From now on, after reading the state again (the page catches up from the REST API, not the backlog).
  reopen(why) {
    this.shut();
    if (this.closed) return;
    this.onStatus(why === 'resumed' ? 'resyncing' : 'reconnecting');
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.closed) return;
      this.open();
      this.onResync();
    }, why === 'resumed' ? 100 : 3000);
  }

  shut() {
    if (this.source) this.source.close();
    this.source = null;
    clearTimeout(this.retry);
  }

  close() {
    this.closed = true;
    this.shut();
  }
}
