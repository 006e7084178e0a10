// The link to chat-server: login over HTTP for a one-time ticket, then one
// WebSocket, reconnected with backoff and jitter whenever it drops. It knows
// the protocol (docs/protocol.md) but nothing of the page.

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
export async function postJson(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
  });
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
 * One user's connection, kept up until `stop()`.
 *
 * Callbacks (all optional):
 * - `onState({state, attempt, retryInMs, reason})`; state is one of
 *   `connecting`, `connected`, `reconnecting`, `offline`.
 * - `onWelcome(payload)` once per socket, before any other event.
 * - `onEvent(event, request)`: every server event after `welcome`. `request`
 *   is the `{type, payload}` this client sent that the event answers
 *   (`joined`, `left`, `ack`, `history_page`, `room_list` or `error`), else null.
 * - `onLost(unanswered)`: the socket dropped; `unanswered` lists the requests
 *   the server never answered (a message in it may or may not have arrived).
 * - `onFatal(message)`: giving up for good (wrong password, unknown version).
 */
export class Connection {
  #credentials;
  #callbacks;
  #ws = null;
  #user = null;
  #limits = null;
  #attempt = 0;
  #retryTimer = null;
  #pollTimer = null;
  #lastFrameAt = 0;
  #stopped = false;
  /** Requests sent on the current socket and not answered yet, oldest first
   * (see `#answered`). */
  #pending = [];

  constructor(credentials, callbacks) {
    this.#credentials = credentials;
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

  /** Connects, with a ticket the caller already has, or by logging in. */
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
    this.#credentials = null;
  }

  /**
   * Sends one event. Returns null when sent, else why not: `offline`, or
   * `too_big` when the frame exceeds the server's `max_message_bytes`.
   */
  send(type, payload) {
    if (!this.connected) return 'offline';
    const frame = JSON.stringify({ type, payload });
    if (this.#tooBig(frame)) return 'too_big';
    this.#ws.send(frame);
    // A resuming join is answered once its catch-up is done, possibly after
    // the answers to later requests (docs/protocol.md, section 4).
    const resume = type === 'join_room' && payload.since !== undefined;
    this.#pending.push({ type, payload, resume, started: false });
    return null;
  }

  /** Whether an event would exceed the server's `max_message_bytes` (false
   * before the first `welcome`: the limit is not known yet). */
  tooBig(type, payload) {
    return this.#limits !== null && this.#tooBig(JSON.stringify({ type, payload }));
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
      ({ ticket } = await postJson('/api/login', this.#credentials));
    } catch (e) {
      if (this.#stopped) return;
      if (e instanceof ApiError && e.code === 'invalid_credentials') {
        this.#fatal('The server no longer accepts this user name and password. Sign in again.');
      } else if (e instanceof ApiError && e.code === 'account_disabled') {
        this.#fatal(ACCOUNT_DISABLED_MESSAGE);
      } else if (e instanceof ApiError && e.retryAfterSecs !== null) {
        this.#retry(`login refused: ${e.message}`, e.retryAfterSecs * 1000);
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
    this.#pending = [];
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
    const request = this.#answered(event.type, payload);
    this.#callbacks.onEvent?.({ type: event.type, payload }, request);
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
    this.send('list_rooms', {});
    clearInterval(this.#pollTimer);
    const silence = Math.max(2 * POLL_MS, this.#limits.ping_interval_ms + this.#limits.pong_timeout_ms);
    this.#pollTimer = setInterval(() => {
      if (Date.now() - this.#lastFrameAt > silence + 5000) {
        this.#abandon('the server stopped answering');
      } else {
        this.send('list_rooms', {});
      }
    }, POLL_MS);
  }

  /**
   * Which of our requests this event answers, if any (and forgets it).
   *
   * The server handles a connection's requests in order, and answers them in
   * that order, with one exception: a resuming `join_room` (with `since`) is
   * accepted or refused in order (`rate_limited` and the like), but its
   * `joined`, or a late `too_many_rooms` or `internal`, comes after its
   * catch-up, possibly after answers to later requests. So answers that name
   * their request (`joined` and `history_page` by room, `ack` by `client_id`,
   * ...) are matched by that, and an `error`, which names nothing, goes to the
   * oldest request still due an answer in order; resumes known to be past
   * that point ("started") only take the errors a catch-up can end with.
   */
  #answered(type, payload) {
    const pending = this.#pending;
    const take = (match) => {
      const i = pending.findIndex(match);
      if (i < 0) return null;
      // An in-order answer to this request: every resume sent before it got
      // past its own in-order step without an error.
      for (const earlier of pending.slice(0, i)) if (earlier.resume) earlier.started = true;
      return pending.splice(i, 1)[0];
    };
    const room = payload.room;
    switch (type) {
      case 'joined':
        // The resume (or plain join) for this room, wherever it is in line.
        return strip(take((r) => r.type === 'join_room' && r.payload.room === room));
      case 'left':
        return strip(take((r) => r.type === 'leave_room' && r.payload.room === room));
      case 'ack':
        return strip(
          take((r) => r.type === 'send_message' && r.payload.room === room && (r.payload.client_id ?? null) === (payload.client_id ?? null)),
        );
      case 'history_page':
        return strip(take((r) => r.type === 'history' && r.payload.room === room));
      case 'room_list':
        return strip(take((r) => r.type === 'list_rooms'));
      case 'new_message':
      case 'history_gap':
        // Not answers; but a catch-up under way shows its resume was accepted.
        for (const r of pending) if (r.resume && r.payload.room === room) r.started = true;
        return null;
      case 'error': {
        const late = payload.code === 'too_many_rooms' || payload.code === 'internal';
        const due = pending.findIndex((r) => !(r.resume && r.started));
        const head = pending[due];
        // A late refusal of a resume, unless the request due in order could
        // have earned that same code itself.
        const couldBeHead =
          head !== undefined &&
          (payload.code === 'internal' ? head.type !== 'leave_room' : head.type === 'join_room');
        if (late && !couldBeHead) {
          const resumed = pending.findIndex((r) => r.resume && r.started);
          if (resumed >= 0) return strip(pending.splice(resumed, 1)[0]);
        }
        return due < 0 ? null : strip(take((r, i) => i === due));
      }
      default:
        return null;
    }
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
    const unanswered = this.#pending.map(strip);
    this.#pending = [];
    this.#ws = null;
    const wasConnected = this.#user !== null;
    this.#user = null;
    if (this.#stopped) return;
    if (wasConnected) this.#callbacks.onLost?.(unanswered, reason);
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
    this.#fatalMessage = message;
    this.#stopped = true;
    clearInterval(this.#pollTimer);
    if (this.#ws) {
      this.#ws.close(1000, 'giving up');
      this.#ws = null;
    }
    this.#state('offline', { reason: message });
    this.#callbacks.onFatal?.(message);
  }
}

/** A request as it was sent, without the bookkeeping. */
function strip(request) {
  return request === null ? null : { type: request.type, payload: request.payload };
}

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
