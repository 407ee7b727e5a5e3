// The REST API, with the bearer token when one is set. A browser cannot send a header when it opens a page
// or an EventSource, so the page keeps the token (asked for on the first 401, kept for the browser tab in
// sessionStorage, or given once as /?token=... which the page then removes from the address bar) and sends
// it itself: `Authorization: Bearer` on each request, `?token=` on the event stream (docs/operations.md).
const key = 'aipbx-token';

export class Api {
  constructor() {
    const url = new URL(location.href);
    const given = url.searchParams.get('token');
    if (given) {
      sessionStorage.setItem(key, given);
      url.searchParams.delete('token');
      history.replaceState(null, '', url.pathname + url.search + url.hash);
    }
    this.token = sessionStorage.getItem(key) || '';
    this.onUnauthorized = () => {};
  }

  setToken(token) {
    this.token = token;
    if (token) sessionStorage.setItem(key, token);
    else sessionStorage.removeItem(key);
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  // The event stream's URL with `params` (and the token: an EventSource sends no headers).
  eventsUrl(params) {
    const q = new URLSearchParams(params);
    if (this.token) q.set('token', this.token);
    return `/v1/events?${q}`;
  }

  async request(method, path) {
    const res = await fetch(path, { method, headers: this.headers(), cache: 'no-store' });
    if (res.status === 401) {
      this.onUnauthorized();
      throw new ApiError(401, 'unauthorized: a token is needed');
    }
    const body = res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text();
    if (!res.ok) throw new ApiError(res.status, typeof body === 'object' ? JSON.stringify(body.detail) : body);
    return body;
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path) {
    return this.request('POST', path);
  }

  // Every page of a keyset-paged listing (`{name: [...], next_after}`), at most `maxPages` of them.
  async getAll(path, name, maxPages = 20) {
    const out = [];
    let after = null;
    for (let page = 0; page < maxPages; ++page) {
      const sep = path.includes('?') ? '&' : '?';
      const body = await this.get(after === null ? path : `${path}${sep}after=${encodeURIComponent(after)}`);
      out.push(...body[name]);
      if (body.next_after === null || body.next_after === undefined) break;
      after = body.next_after;
    }
    return out;
  }
}

export class ApiError extends Error {
  constructor(status, message) {
    super(`${status} ${message}`);
    this.status = status;
  }
}
