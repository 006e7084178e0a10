// The link to chat-server: a one-time ticket from the session over HTTP,
// then one WebSocket, reconnected with backoff and jitter (and a fresh ticket
// from the same session) whenever it drops. It knows the protocol
// (docs/protocol.md, sections 1-3) but nothing of the page, and it does not
// read the frames it carries: matching answers to requests is the model's.

/** The protocol version this client speaks (`welcome.protocol_version`). */
export const PROTOCOL_VERSION = 1;

/** First reconnect delay; doubled per failed attempt up to RETRY_MAX_MS. */
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 15000;
/** How often the room list is asked for while connected. The answer also
 * proves the server is alive: browsers hide WebSocket pings from scripts. */
const POLL_MS = 15000;

/** A refused HTTP request, with the server's error body. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterSecs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterSecs = retryAfterSecs;
  }
}

/**
 * POSTs a JSON body to the server this page came from. Resolves with the
 * parsed answer; rejects with ApiError for a refusal, or TypeError when the
 * server cannot be reached at all.
 */
export function postJson(path, body) {
  return post(path, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/**
 * POSTs with the session as the bearer credential (`/api/ticket`,
 * `/api/logout`): in the header only, never in a URL. Resolves and rejects
 * as `postJson`; a 204 resolves with null.
 */
export function postWithSession(path, session, { keepalive = false } = {}) {
  return post(path, { headers: { authorization: `Bearer ${session}` }, keepalive });
}

async function post(path, { headers, body, keepalive = false }) {
  const response = await fetch(path, { method: 'POST', headers, body, cache: 'no-store', keepalive });
  let json = null;
  try {
    json = await response.json();
  } catch {
    // A proxy's HTML error page, say: report the status alone.
  }
  if (!response.ok) {
    const retry = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
    throw new ApiError(
      response.status,
      json?.code ?? 'internal',
      json?.message ?? `the server answered ${response.status}`,
      Number.isFinite(retry) ? retry : null,
    );
  }
  return json;
}

/** The socket URL for a ticket: wss when the page itself came over https. */
export function socketUrl(ticket, loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws?ticket=${encodeURIComponent(ticket)}`;
}

/** Delay before reconnect attempt `attempt` (1, 2, ...): exponential, with
 * "equal jitter" so that clients dropped together do not return together. */
export function retryDelay(attempt, random = Math.random) {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt - 1, 10));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * One user's connection, kept up until `stop()`, on the `session` token of a
 * password login (`POST /api/login`). Every socket, the first included unless
 * `start` is given the login's own ticket, opens with a fresh ticket minted
 * from the session; the password is never needed again.
 *
 * Callbacks (all optional):
 * - `onState({state, attempt, retryInMs, reason})`; state is one of
 *   `connecting`, `connected`, `reconnecting`, `offline`.
 * - `onWelcome(payload)` once per socket, before any other event.
 * - `onEvent({type, payload, ref})`: every server event after `welcome`.
 *   Answers to this connection's own keep-alive requests come too (their
 *   `ref` starts with `keepalive-`): a `room_list` of one room, whose count
 *   is news to the page all the same.
 * - `onLost(reason)`: the socket dropped; what was sent on it and not
 *   answered may or may not have arrived.
 * - `onSessionEnded(message)`: the server no longer knows the session (401
 *   `invalid_session`: logged out, expired, or ended by newer ones); only a
 *   password login can go on. The connection has stopped.
 * - `onFatal(message)`: giving up for good (a disabled account, an unknown
 *   protocol version).
 */
export class Connection {
  #session;
  #callbacks;
  #ws = null;
  #user = null;
  #limits = null;
  #attempt = 0;
  #retryTimer = null;
  #pollTimer = null;
  #lastFrameAt = 0;
  #stopped = false;
  /** Numbers this connection's own requests (the keep-alive `list_rooms`). */
  #lastRef = 0;

  constructor(session, callbacks) {
    this.#session = session;
    this.#callbacks = callbacks;
    // Coming back online is worth an attempt at once, whatever the backoff said.
    this.onOnline = () => {
      if (this.#retryTimer !== null) this.retryNow();
    };
    window.addEventListener('online', this.onOnline);
  }

  /** The user name the server confirmed, once connected. */
  get user() {
    return this.#user;
  }

  /** The server's limits from `welcome`, once connected. */
  get limits() {
    return this.#limits;
  }

  get connected() {
    return this.#ws !== null && this.#user !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  /** Connects, with a ticket the caller already has, or with one from the session. */
  start(ticket = null) {
    if (ticket) {
      this.#state('connecting');
      this.#open(ticket);
    } else {
      this.#connect();
    }
  }

  /** Skips the rest of a backoff wait. */
  retryNow() {
    if (this.#stopped || this.#retryTimer === null) return;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#connect();
  }

  /** Closes for good (sign out): code 1000, no reconnect. */
  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pollTimer);
    window.removeEventListener('online', this.onOnline);
    if (this.#ws) {
      this.#ws.close(1000, 'signed out');
      this.#ws = null;
    }
    this.#session = null;
  }

  /**
   * Sends one frame (`{type, payload, ref}`) as it is. Returns null when
   * sent, else why not: `offline`, or `too_big` when the frame exceeds the
   * server's `max_message_bytes`.
   */
  send(frame) {
    if (!this.connected) return 'offline';
    const text = JSON.stringify(frame);
    if (this.#tooBig(text)) return 'too_big';
    this.#ws.send(text);
    return null;
  }

  /** Whether a frame would exceed the server's `max_message_bytes` (false
   * before the first `welcome`: the limit is not known yet). */
  tooBig(frame) {
    return this.#limits !== null && this.#tooBig(JSON.stringify(frame));
  }

  #tooBig(frame) {
    return new TextEncoder().encode(frame).length > this.#limits.max_message_bytes;
  }

  #state(state, extra = {}) {
    this.#callbacks.onState?.({ state, attempt: this.#attempt, ...extra });
  }

  async #connect() {
    this.#retryTimer = null;
    this.#state(this.#attempt === 0 ? 'connecting' : 'reconnecting');
    let ticket;
    try {
      // A fresh ticket every time: they are single use and short-lived.
      ({ ticket } = await postWithSession('/api/ticket', this.#session));
    } catch (e) {
      if (this.#stopped) return;
      if (e instanceof ApiError && e.status === 401 && e.code === 'invalid_session') {
        this.#sessionEnded();
      } else if (e instanceof ApiError && e.retryAfterSecs !== null) {
        this.#retry(`the server refused a ticket: ${e.message}`, e.retryAfterSecs * 1000);
      } else {
        this.#retry(e instanceof ApiError ? e.message : 'the server cannot be reached');
      }
      return;
    }
    if (this.#stopped) return;
    this.#open(ticket);
  }

  #open(ticket) {
    const ws = new WebSocket(socketUrl(ticket));
    this.#ws = ws;
    this.#user = null;
    // Each handler first checks that its socket is still the current one: a
    // socket abandoned by the watchdog may still report events later.
    ws.addEventListener('open', () => {
      if (ws !== this.#ws) return;
      this.#lastFrameAt = Date.now();
    });
    ws.addEventListener('message', (e) => {
      if (ws !== this.#ws) return;
      this.#lastFrameAt = Date.now();
      this.#receive(e.data);
    });
    let failed = false;
    ws.addEventListener('error', () => {
      // Browsers give no detail here (on purpose: a refused upgrade looks
      // like a network failure); `close` always follows and decides.
      failed = true;
    });
    ws.addEventListener('close', (e) => {
      if (ws !== this.#ws) return;
      if (e.code === ACCOUNT_DISABLED_CLOSE) {
        // docs/protocol.md: do not reconnect. Set first, so that #lost
        // reports the loss but does not retry.
        this.#fatalMessage = ACCOUNT_DISABLED_MESSAGE;
        this.#lost(describeClose(e.code, e.reason));
        this.#fatal(ACCOUNT_DISABLED_MESSAGE);
        return;
      }
      this.#lost(failed && this.#user === null ? 'the server refused the connection' : describeClose(e.code, e.reason));
    });
  }

  #receive(data) {
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      return; // Not from a chat server we know; nothing sensible to do with it.
    }
    if (typeof event !== 'object' || event === null || typeof event.type !== 'string') return;
    const payload = event.payload ?? {};
    if (this.#user === null) {
      this.#welcome(event.type, payload);
      return;
    }
    this.#callbacks.onEvent?.({ type: event.type, payload, ref: event.ref });
  }

  #welcome(type, payload) {
    if (type !== 'welcome') return;
    if (payload.protocol_version !== PROTOCOL_VERSION) {
      this.#fatal(
        `This server speaks protocol version ${payload.protocol_version}; this page speaks ` +
          `${PROTOCOL_VERSION}. Reload the page, or ask the operator to upgrade.`,
      );
      return;
    }
    this.#user = String(payload.user);
    // Defaults from docs/protocol.md, should a server ever leave one out.
    this.#limits = {
      max_message_bytes: 65536,
      ping_interval_ms: 20000,
      pong_timeout_ms: 10000,
      ...payload.limits,
    };
    this.#attempt = 0;
    this.#callbacks.onWelcome?.(payload);
    this.#state('connected');
    this.#keepAlive();
    clearInterval(this.#pollTimer);
    const silence = Math.max(2 * POLL_MS, this.#limits.ping_interval_ms + this.#limits.pong_timeout_ms);
    this.#pollTimer = setInterval(() => {
      if (Date.now() - this.#lastFrameAt > silence + 5000) {
        this.#abandon('the server stopped answering');
      } else {
        this.#keepAlive();
      }
    }, POLL_MS);
  }

  /** Asks for one room of the room list: its answer proves the server alive. */
  #keepAlive() {
    this.#lastRef += 1;
    this.send({ type: 'list_rooms', payload: { limit: 1 }, ref: `keepalive-${this.#lastRef}` });
  }

  /** Gives up on a silent socket without waiting for a close handshake that
   * a dead server would never complete. */
  #abandon(reason) {
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'no answer');
    this.#lost(reason);
  }

  #lost(reason) {
    clearInterval(this.#pollTimer);
    this.#ws = null;
    const wasConnected = this.#user !== null;
    this.#user = null;
    if (this.#stopped) return;
    if (wasConnected) this.#callbacks.onLost?.(reason);
    if (this.#fatalMessage) return;
    this.#retry(reason);
  }

  #retry(reason, atLeastMs = 0) {
    this.#attempt += 1;
    const delay = Math.max(atLeastMs, retryDelay(this.#attempt));
    this.#state('reconnecting', { retryInMs: delay, reason });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #fatalMessage = null;

  #fatal(message) {
    this.#giveUp(message);
    this.#callbacks.onFatal?.(message);
  }

  #sessionEnded() {
    this.#giveUp(SESSION_ENDED_MESSAGE);
    this.#callbacks.onSessionEnded?.(SESSION_ENDED_MESSAGE);
  }

  #giveUp(message) {
    this.#fatalMessage = message;
    this.#stopped = true;
    clearInterval(this.#pollTimer);
    window.removeEventListener('online', this.onOnline);
    if (this.#ws) {
      this.#ws.close(1000, 'giving up');
      this.#ws = null;
    }
    this.#session = null;
    this.#state('offline', { reason: message });
  }
}

/** Why a session the server no longer knows sends the user to the form. */
const SESSION_ENDED_MESSAGE =
  'Your session has ended (it expired, was signed out elsewhere, or the account was disabled). Sign in again to continue.';

/** The close code of a connection whose account an operator disabled. */
const ACCOUNT_DISABLED_CLOSE = 4003;
const ACCOUNT_DISABLED_MESSAGE = 'An operator disabled this account; ask them to enable it again.';

/** A person's reading of a close code (docs/protocol.md, section 7). */
function describeClose(code, reason) {
  switch (code) {
    case 1000:
      return 'the connection was closed';
    case 1001:
      return 'the server is restarting';
    case 1008:
      return reason ? `the server dropped us: ${reason}` : 'the server dropped us';
    case 1009:
      return 'a message was too big for the server';
    case ACCOUNT_DISABLED_CLOSE:
      return 'an operator disabled this account';
    default:
      return 'the connection was lost';
  }
}
