// The page's model of rooms and messages (docs/protocol.md, sections 4, 5 and
// 11): pure state, with no DOM, no socket and no timers. Server events and
// the user's intents go in; what to send, and what to tell the user, come out
// as an `Effects`. app.js feeds it from the connection and the page, and
// render.js draws it.
//
// Requests are matched to their answers by `ref` alone: the model names
// every frame it sends and remembers what it asked, so an `error` always
// reaches the request it refuses, whatever order the answers come in.

/** Entries (messages, notices, gaps) kept per room; older ones are dropped
 * (and can be loaded again with `history`). */
export const MAX_KEPT = 500;
/** Older messages asked for per `history` request. */
export const PAGE_SIZE = 50;
/** Most rooms the room list reads: pages (`room_list` comes a page at a
 * time) stop after this many; a room beyond them is joined by its name. */
export const MAX_DIRECTORY = 1000;
/** Shown in a room whose server-side history was replaced (a new `epoch`). */
export const RESET_NOTICE = 'The server’s history was reset; earlier messages are gone.';

/** What one step of the model asks of the page. */
export class Effects {
  constructor() {
    /** Frames to send, in order: `{type, payload, ref}`. */
    this.send = [];
    /** A problem to show beside the conversation, or null. */
    this.chatError = null;
    /** A problem to show under the room field, or null. */
    this.joinError = null;
    /** Unsent texts to put back in the composer: `{room, text}`. */
    this.giveBack = [];
    /** Rooms whose rejoin the rate limit refused: ask again a little later
     * (`ChatModel.rejoin`); the model keeps no timers. */
    this.retryJoin = [];
    /** Whether the composer should take the focus (a join the user asked for). */
    this.focusComposer = false;
  }
}

/** A `seq` from the network as a number, or null when it is not one. */
function seqOf(value) {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** A message object from the network, checked and copied; null if unusable. */
function messageOf(m) {
  if (typeof m !== 'object' || m === null) return null;
  const seq = seqOf(m.seq);
  if (seq === null || seq === 0) return null;
  return {
    seq,
    id: String(m.id ?? ''),
    from: String(m.from ?? ''),
    text: String(m.text ?? ''),
    sentAt: String(m.sent_at ?? ''),
  };
}

/** The server sorts names by byte value; so does the page, for the same order. */
export function byteOrder(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** What the page knows of one room. */
export class RoomState {
  constructor(name) {
    this.name = name;
    /** In the room, or to rejoin after a reconnect. */
    this.joined = false;
    /** A member on the current connection (its `joined` came). */
    this.live = false;
    /** A resume (`join_room` with `since`) is catching up. */
    this.resuming = false;
    /** The `epoch` of the `joined` that numbered what is held (null: none yet,
     * or a server without epochs). */
    this.epoch = null;
    /** The newest `seq` received: a reconnect resumes after it. */
    this.lastSeq = 0;
    /** Counts the times the room's history was dropped; part of every entry's
     * key, so nothing of an old history is ever taken for the new one. */
    this.generation = 0;
    /** The conversation, oldest first: `{kind: 'message', key, seq, id, from,
     * text, sentAt, own}`, `{kind: 'notice', key, text, tone}` or `{kind: 'gap',
     * key, from, to}`. Messages are in `seq` order. */
    this.entries = [];
    /** Messages sent and not yet received back, oldest first: `{clientId,
     * text, seq, status, reason}`; `seq` comes with the `ack`; `status` is
     * `sending`, `sent` (acked) or `failed` (refused; `reason` says why). */
    this.outbox = [];
    /** Members (each once, sorted), while joined. */
    this.members = [];
    /** Members the last `joined` counted but did not list (`members_total`
     * beyond `members`: a room too big for one frame lists the first by name). */
    this.unlisted = 0;
    /** Distinct users in the room as of the last `room_list`; null: unlisted. */
    this.count = null;
    /** `last_activity` from the last `room_list` (ISO string or null). */
    this.lastActivity = null;
    /** Messages from others that arrived while the room was not open. */
    this.unread = 0;
    /** The key of the first of those. */
    this.firstUnreadKey = null;
    /** The "N new messages" line: `{beforeKey, count}` or null. */
    this.marker = null;
    /** Messages caught up by the current resume while this room was open. */
    this.caughtUp = 0;
    /** Whether older messages than the oldest held may exist. */
    this.hasOlder = false;
    /** A `history` request is out. */
    this.loadingOlder = false;
    /** Brought back from storage after a reload: nothing of it is held yet,
     * so once its resume is done the page asks for the scrollback. */
    this.restored = false;
  }

  /** Members now: exact while joined, else the last listed count. */
  get size() {
    return this.joined ? this.members.length + this.unlisted : this.count;
  }

  /** The held messages, oldest first. */
  get messages() {
    return this.entries.filter((e) => e.kind === 'message');
  }

  /** The smallest `seq` held, or null. */
  get oldestSeq() {
    return this.entries.find((e) => e.kind === 'message')?.seq ?? null;
  }
}

/**
 * Every room of one signed-in page, and the requests it has out.
 *
 * Each method takes one server event or user intent and returns an
 * `Effects`; the state is read straight from the object (`rooms`,
 * `current`, ...) and must be changed only through the methods.
 */
export class ChatModel {
  /** Every room the page knows, by name. */
  rooms = new Map();
  /** The name of the open room, or null. */
  current = null;
  /** The user name the server confirmed (`welcome.user`), or null. */
  me = null;
  /** A room to open once its `joined` arrives (the user asked to join it). */
  openOnJoin = null;
  /** Set once the first `welcome` came: later ones are reconnects. */
  everConnected = false;
  #maxKept;
  /** Requests sent on this connection and not answered yet, by `ref`:
   * `{type, payload, generation}` (the room's generation when it was sent). */
  #requests = new Map();
  #lastRef = 0;
  /** The room names of a room list reading under way (its pages so far), or
   * null: none under way. */
  #listing = null;
  #lastNotice = 0;

  constructor({ maxKept = MAX_KEPT } = {}) {
    this.#maxKept = maxKept;
  }

  /** The number of requests waiting for their answer. */
  get unanswered() {
    return this.#requests.size;
  }

  /** What a reload needs to resume: the rooms joined, with the newest `seq`
   * and the `epoch` of each, the messages sent there and not yet
   * acknowledged (with their client_id, so a resend after the reload cannot
   * double them), and the open room. Plain data, for storage. */
  snapshot() {
    const rooms = [...this.rooms.values()]
      .filter((r) => r.joined)
      .map((r) => {
        const saved = { name: r.name, lastSeq: r.lastSeq, epoch: r.epoch };
        const unsent = r.outbox
          .filter((p) => p.seq === null && p.status === 'sending')
          .map(({ clientId, text }) => ({ clientId, text }));
        if (unsent.length > 0) saved.unsent = unsent;
        return saved;
      });
    return { rooms, current: this.current };
  }

  /** Takes back a `snapshot()` (after a reload): its rooms count as joined,
   * to resume on the next `welcome`. Entries that are not well formed are
   * skipped. */
  restore(snapshot) {
    for (const saved of Array.isArray(snapshot?.rooms) ? snapshot.rooms : []) {
      if (typeof saved?.name !== 'string' || !saved.name) continue;
      const r = this.#room(saved.name);
      r.joined = true;
      r.lastSeq = seqOf(saved.lastSeq) ?? 0;
      r.epoch = typeof saved.epoch === 'string' && saved.epoch ? saved.epoch : null;
      r.restored = r.lastSeq > 0;
      r.hasOlder = r.lastSeq > 0;
      for (const p of Array.isArray(saved.unsent) ? saved.unsent : []) {
        const wellFormed =
          typeof p?.clientId === 'string' && p.clientId.length > 0 && p.clientId.length <= 64 &&
          typeof p.text === 'string' && p.text.length > 0;
        if (wellFormed && !r.outbox.some((q) => q.clientId === p.clientId)) {
          r.outbox.push({ clientId: p.clientId, text: p.text, seq: null, status: 'sending', reason: null });
        }
      }
    }
    const current = snapshot?.current;
    if (typeof current === 'string' && this.rooms.get(current)?.joined) this.current = current;
  }

  /** The messages held for `room`, oldest first, as `{seq, from, text}`
   * (copies). Messages still waiting for their `ack` are not held. */
  held(room) {
    return (this.rooms.get(room)?.messages ?? []).map(({ seq, from, text }) => ({ seq, from, text }));
  }

  // ------------------------------------------------------------ connection

  /** A socket was accepted (`welcome`): every joined room is joined again,
   * the open one first, resuming after its newest message. */
  welcome(user) {
    const fx = new Effects();
    this.me = String(user);
    const rejoin = [...this.rooms.values()].filter((r) => r.joined);
    rejoin.sort((a, b) => (b.name === this.current) - (a.name === this.current));
    for (const r of rejoin) this.#rejoin(r, fx);
    if (this.everConnected && this.current) this.#notice(this.#room(this.current), 'Reconnected.');
    this.everConnected = true;
    return fx;
  }

  /** The socket dropped: nothing sent on it will be answered. Unconfirmed
   * messages stay in the outbox, to go again once their room is rejoined. */
  lost(reason) {
    this.#requests.clear();
    this.#listing = null;
    for (const r of this.rooms.values()) {
      r.live = false;
      r.resuming = false;
      r.loadingOlder = false;
    }
    if (this.current) this.#notice(this.#room(this.current), `Connection lost: ${reason}.`);
    return new Effects();
  }

  /** Joins `room` again after the rate limit refused its rejoin. */
  rejoin(room) {
    const fx = new Effects();
    const r = this.rooms.get(room);
    if (r?.joined && !r.live && !r.resuming) this.#rejoin(r, fx);
    return fx;
  }

  #rejoin(r, fx) {
    r.live = false;
    r.resuming = r.lastSeq > 0;
    r.caughtUp = 0;
    const payload = { room: r.name };
    if (r.resuming) {
      payload.since = r.lastSeq;
      if (r.epoch !== null) payload.epoch = r.epoch;
    }
    fx.send.push(this.#frame('join_room', payload, r));
  }

  // --------------------------------------------------------- server events

  /** One event from the server after `welcome`: `{type, payload, ref}`. */
  receive(event) {
    const fx = new Effects();
    const type = event?.type;
    const payload = typeof event?.payload === 'object' && event.payload !== null ? event.payload : {};
    const request = this.#answered(event?.ref);
    switch (type) {
      case 'joined':
        this.#joined(payload, request, fx);
        break;
      case 'left':
        this.#left(request?.payload.room ?? payload.room, fx);
        break;
      case 'member_joined':
        this.#member(payload.room, payload.user, true);
        break;
      case 'member_left':
        this.#member(payload.room, payload.user, false);
        break;
      case 'new_message':
        this.#newMessage(payload);
        break;
      case 'ack':
        this.#ack(payload, request);
        break;
      case 'history_page':
        this.#historyPage(payload, request);
        break;
      case 'history_gap':
        this.#historyGap(payload);
        break;
      case 'room_list':
        this.#roomList(payload, request, fx);
        break;
      case 'error':
        this.#error(payload, request, event?.ref, fx);
        break;
      default:
        // A newer server's event: ignored, as the protocol asks.
        break;
    }
    return fx;
  }

  /** The request `ref` answers (and forgets it), or null: no ref, or one this
   * model did not send (the connection's own keep-alive `list_rooms`). */
  #answered(ref) {
    if (typeof ref !== 'string' || !this.#requests.has(ref)) return null;
    const request = this.#requests.get(ref);
    this.#requests.delete(ref);
    return request;
  }

  #joined(payload, request, fx) {
    if (typeof payload.room !== 'string') return;
    const r = this.#room(payload.room);
    const first = !r.joined;
    const since = request?.payload.since;
    const epoch = typeof payload.epoch === 'string' && payload.epoch ? payload.epoch : null;
    const lastSeq = seqOf(payload.last_seq) ?? 0;
    // A different epoch: the server's history is not the one our numbers
    // belong to. Without epochs on both sides, a `last_seq` below what we
    // resumed after says the same.
    const otherHistory =
      r.epoch !== null && epoch !== null ? epoch !== r.epoch : since !== undefined && lastSeq < since;
    // Worth saying only if something of the old history was held.
    if (otherHistory && (r.lastSeq > 0 || r.outbox.some((p) => p.seq !== null))) {
      this.#dropHistory(r);
      this.#notice(r, RESET_NOTICE, 'warn');
    }
    const restored = r.restored && !otherHistory;
    r.restored = false;
    r.joined = true;
    r.live = true;
    r.resuming = false;
    r.caughtUp = 0;
    if (epoch !== null) r.epoch = epoch;
    r.members = [...new Set((Array.isArray(payload.members) ? payload.members : []).map(String))].sort(byteOrder);
    r.unlisted = Number.isSafeInteger(payload.members_total) ? Math.max(0, payload.members_total - r.members.length) : 0;
    // Scrollback on a plain join; a resume's messages came before `joined`.
    const history = (Array.isArray(payload.history) ? payload.history : [])
      .map(messageOf)
      .filter((m) => m !== null && m.seq > r.lastSeq)
      .sort((a, b) => a.seq - b.seq);
    if (r.lastSeq === 0 && r.oldestSeq === null) {
      r.hasOlder = history.length > 0 ? history[0].seq > 1 : lastSeq > 0;
    }
    for (const m of history) this.#addMessage(r, m, { history: true });
    r.lastSeq = Math.max(r.lastSeq, lastSeq);
    if (first) this.#notice(r, `You joined ${r.name}.`);
    this.#resendPending(r, fx);
    if (restored) {
      // After a reload only what came since is held: fetch what came before.
      r.hasOlder = true;
      this.#loadOlder(r, fx);
    }
    const asked = this.openOnJoin === r.name;
    if (asked || this.current === null) {
      this.openOnJoin = null;
      this.#open(r.name);
      fx.focusComposer = asked;
    }
  }

  /** Forgets everything held of `r` that belongs to its history: messages,
   * notices, acked messages (their seq is of that history) and the requests
   * about it. Messages never acked stay, to be sent into the new history. */
  #dropHistory(r) {
    r.generation += 1;
    r.entries = [];
    r.lastSeq = 0;
    r.epoch = null;
    r.outbox = r.outbox.filter((p) => p.seq === null);
    r.unread = 0;
    r.firstUnreadKey = null;
    r.marker = null;
    r.caughtUp = 0;
    r.hasOlder = false;
    r.loadingOlder = false;
    r.restored = false;
  }

  #left(name, fx) {
    const r = this.rooms.get(name);
    if (!r) return;
    r.joined = false;
    r.live = false;
    r.resuming = false;
    r.members = [];
    // Whatever was still unconfirmed goes back to the box.
    for (const p of r.outbox) if (p.seq === null) fx.giveBack.push({ room: r.name, text: p.text });
    r.outbox = [];
    // A later join is a plain one, with fresh scrollback.
    this.#dropHistory(r);
    if (this.current === r.name) {
      const next = [...this.rooms.values()].find((other) => other.joined);
      this.#open(next?.name ?? null);
    }
  }

  #member(name, user, present) {
    const r = this.rooms.get(name);
    if (!r?.live || typeof user !== 'string') return;
    const others = r.members.filter((m) => m !== user);
    r.members = present ? [...others, user].sort(byteOrder) : others;
    this.#notice(r, present ? `${user} joined.` : `${user} left.`);
  }

  #newMessage(payload) {
    const r = this.rooms.get(payload.room);
    const m = messageOf(payload);
    if (!r?.joined || m === null) return;
    this.#addMessage(r, m, { history: false });
  }

  /** Holds a live, caught-up or scrollback message once: a `seq` at or
   * below the newest held is a repeat or out of order, and is dropped. */
  #addMessage(r, m, { history }) {
    if (m.seq <= r.lastSeq) return;
    r.lastSeq = m.seq;
    const own = m.from === this.me;
    // Our own message, received: it is held now, no longer pending.
    const mine = r.outbox.findIndex((p) => p.seq === m.seq);
    if (mine >= 0) r.outbox.splice(mine, 1);
    const entry = { kind: 'message', key: `m${r.generation}:${m.seq}`, ...m, own };
    this.#append(r, entry);
    if (own || history) return;
    if (r.name !== this.current) {
      if (r.unread === 0) r.firstUnreadKey = entry.key;
      r.unread += 1;
    } else if (r.resuming) {
      // Caught up while this room was open but the connection was down.
      r.marker = r.caughtUp > 0 && r.marker ? { ...r.marker, count: r.marker.count + 1 } : { beforeKey: entry.key, count: 1 };
      r.caughtUp += 1;
    }
  }

  #ack(payload, request) {
    const room = request?.payload.room ?? payload.room;
    const clientId = request?.payload.client_id ?? payload.client_id;
    const r = this.rooms.get(room);
    const p = r?.outbox.find((q) => q.clientId === clientId);
    const seq = seqOf(payload.seq);
    if (!p || seq === null) return;
    p.seq = seq;
    p.status = 'sent';
    p.reason = null;
    // A resend of a message that had arrived: it is held already.
    if (seq <= r.lastSeq) r.outbox.splice(r.outbox.indexOf(p), 1);
  }

  #historyPage(payload, request) {
    if (request?.type !== 'history') return;
    const r = this.rooms.get(request.payload.room);
    // Asked about a history since dropped: its numbers mean nothing now.
    if (!r || r.generation !== request.generation) return;
    r.loadingOlder = false;
    const oldest = r.oldestSeq;
    const page = (Array.isArray(payload.messages) ? payload.messages : [])
      .map(messageOf)
      .filter((m) => m !== null && (oldest === null ? m.seq <= r.lastSeq : m.seq < oldest))
      .sort((a, b) => a.seq - b.seq)
      .filter((m, i, all) => i === 0 || all[i - 1].seq !== m.seq);
    const firstSeq = seqOf(payload.first_seq);
    r.hasOlder = page.length > 0 && firstSeq !== null && page[0].seq > firstSeq;
    const entries = page.map((m) => ({ kind: 'message', key: `m${r.generation}:${m.seq}`, ...m, own: m.from === this.me }));
    r.entries = [...entries, ...r.entries];
  }

  #historyGap({ room, from, to }) {
    const r = this.rooms.get(room);
    const first = seqOf(from);
    const last = seqOf(to);
    if (!r?.joined || first === null || last === null || last < first) return;
    this.#append(r, { kind: 'gap', key: `g${r.generation}:${first}-${last}`, from: first, to: last });
    r.lastSeq = Math.max(r.lastSeq, last);
  }

  /** A page of the room list. Its rooms' counts are news whoever asked;
   * a page of this model's own reading asks for the next, and the last one
   * forgets the rooms that no page listed. */
  #roomList(payload, request, fx) {
    const listed = Array.isArray(payload.rooms) ? payload.rooms : [];
    const names = new Set();
    for (const item of listed) {
      if (typeof item?.name !== 'string') continue;
      names.add(item.name);
      const r = this.#room(item.name);
      r.count = Number.isSafeInteger(item.members) ? item.members : null;
      r.lastActivity = typeof item.last_activity === 'string' ? item.last_activity : null;
    }
    // A page this model did not ask for (the connection's keep-alive) is
    // no complete list.
    if (request?.type !== 'list_rooms' || this.#listing === null) return;
    for (const name of names) this.#listing.add(name);
    if (typeof payload.next === 'string' && names.size > 0 && this.#listing.size < MAX_DIRECTORY) {
      fx.send.push(this.#frame('list_rooms', { after: payload.next }, null));
      return;
    }
    const seen = this.#listing;
    this.#listing = null;
    for (const [name, r] of this.rooms) {
      if (seen.has(name)) continue;
      r.count = null;
      // A room with neither members nor messages has ceased to exist; forget
      // it unless it is ours.
      if (!r.joined && name !== this.current && name !== this.openOnJoin) this.rooms.delete(name);
    }
  }

  #error({ code, message }, request, ref, fx) {
    const text = typeof message === 'string' && message ? message : 'The server refused a request.';
    if (request === null) {
      // Someone else's request (the connection's keep-alive) is none of
      // ours; an error naming no request at all is worth showing.
      if (ref === undefined || ref === null) fx.chatError = text;
      return;
    }
    const room = request.payload.room;
    switch (request.type) {
      case 'join_room': {
        const r = this.rooms.get(room);
        if (r?.joined && code === 'rate_limited') {
          r.resuming = false;
          fx.retryJoin.push(room);
          return;
        }
        if (this.openOnJoin === room) this.openOnJoin = null;
        fx.joinError = code === 'too_many_rooms' ? 'You are in as many rooms as the server allows; leave one first.' : text;
        // A rejoin the server refused: stop pretending to be in that room.
        if (r?.joined) this.#left(room, fx);
        return;
      }
      case 'send_message': {
        const r = this.rooms.get(room);
        const p = r?.outbox.find((q) => q.clientId === request.payload.client_id);
        if (!p || p.seq !== null) return; // Confirmed meanwhile.
        const why =
          code === 'rate_limited' ? 'You are sending too fast' : code === 'not_in_room' ? 'You are not in that room any more' : text;
        p.status = 'failed';
        p.reason = why;
        fx.chatError = `Not sent: ${why}.`;
        return;
      }
      case 'history': {
        const r = this.rooms.get(room);
        if (r && r.generation === request.generation) r.loadingOlder = false;
        if (code === 'rate_limited' || code === 'not_in_room') return; // Scrolling up asks again.
        fx.chatError = text;
        return;
      }
      case 'list_rooms':
        this.#listing = null;
        if (code !== 'rate_limited') fx.chatError = text; // Else asked again later anyway.
        return;
      default:
        fx.chatError = text;
    }
  }

  // ---------------------------------------------------------- user intents

  /** The user asks for a room: opened if joined, else joined (and opened
   * when its `joined` arrives). */
  join(room) {
    const fx = new Effects();
    if (this.rooms.get(room)?.joined) {
      this.#open(room);
      fx.focusComposer = true;
      return fx;
    }
    fx.send.push(this.#frame('join_room', { room }, null));
    this.openOnJoin = room;
    return fx;
  }

  /** The user leaves a room. */
  leave(room) {
    const fx = new Effects();
    if (this.rooms.get(room)?.joined) fx.send.push(this.#frame('leave_room', { room }, this.rooms.get(room)));
    return fx;
  }

  /** The user sends `text` to `room`, identified by `clientId` (unique per
   * room and user: resending it can never double it). While the room is
   * rejoining, the message waits and goes once its `joined` arrives. */
  send(room, text, clientId) {
    const fx = new Effects();
    const r = this.rooms.get(room);
    if (!r?.joined) {
      fx.chatError = 'Join the room first.';
      return fx;
    }
    const p = { clientId, text, seq: null, status: 'sending', reason: null };
    r.outbox.push(p);
    if (r.live) fx.send.push(this.#sendFrame(r, p));
    return fx;
  }

  /** Sends a refused message again, with its client_id. */
  retry(room, clientId) {
    const fx = new Effects();
    const r = this.rooms.get(room);
    const p = r?.outbox.find((q) => q.clientId === clientId && q.status === 'failed');
    if (!p) return fx;
    p.status = 'sending';
    p.reason = null;
    if (r.live) fx.send.push(this.#sendFrame(r, p));
    return fx;
  }

  /** Forgets a refused message. */
  discard(room, clientId) {
    const r = this.rooms.get(room);
    if (r) r.outbox = r.outbox.filter((q) => !(q.clientId === clientId && q.status === 'failed'));
    return new Effects();
  }

  /** Reads the room list (member counts, quiet rooms) from its first page,
   * unless a reading is under way: its pages would interleave with these. */
  listRooms() {
    const fx = new Effects();
    if (this.#listing !== null) return fx;
    this.#listing = new Set();
    fx.send.push(this.#frame('list_rooms', {}, null));
    return fx;
  }

  /** Shows `room` (or none): what arrived meanwhile gets its marker. */
  open(room) {
    this.#open(room);
    return new Effects();
  }

  /** Asks for the page of messages before the oldest held. */
  loadOlder(room) {
    const fx = new Effects();
    const r = this.rooms.get(room);
    if (r) this.#loadOlder(r, fx);
    return fx;
  }

  #loadOlder(r, fx) {
    if (!r.hasOlder || r.loadingOlder || !r.live) return;
    const before = r.oldestSeq ?? (r.lastSeq > 0 ? r.lastSeq + 1 : null);
    if (before === null || before <= 1) {
      r.hasOlder = false;
      return;
    }
    fx.send.push(this.#frame('history', { room: r.name, before, limit: PAGE_SIZE }, r));
    r.loadingOlder = true;
  }

  // --------------------------------------------------------------- helpers

  #open(name) {
    if (this.current === name) return;
    this.current = name;
    const r = name === null ? null : this.rooms.get(name);
    if (!r) return;
    r.marker = r.unread > 0 ? { beforeKey: r.firstUnreadKey, count: r.unread } : null;
    r.unread = 0;
    r.firstUnreadKey = null;
  }

  /** Sends again, with their client_id, the messages of `r` never confirmed. */
  #resendPending(r, fx) {
    for (const p of r.outbox) if (p.status === 'sending') fx.send.push(this.#sendFrame(r, p));
  }

  #sendFrame(r, p) {
    return this.#frame('send_message', { room: r.name, text: p.text, client_id: p.clientId }, r);
  }

  /** A request frame with a fresh `ref`, remembered until its answer. */
  #frame(type, payload, r) {
    this.#lastRef += 1;
    const ref = `r${this.#lastRef}`;
    this.#requests.set(ref, { type, payload, generation: r?.generation ?? 0 });
    return { type, payload, ref };
  }

  #room(name) {
    let r = this.rooms.get(name);
    if (!r) {
      r = new RoomState(name);
      this.rooms.set(name, r);
    }
    return r;
  }

  /** A line for the user in the conversation; `tone` `warn` for news that
   * changes what the conversation means. */
  #notice(r, text, tone = 'info') {
    this.#lastNotice += 1;
    this.#append(r, { kind: 'notice', key: `n${this.#lastNotice}`, text, tone });
  }

  /** Adds an entry at the end, dropping the oldest beyond the limit. */
  #append(r, entry) {
    r.entries.push(entry);
    if (r.entries.length <= this.#maxKept) return;
    const dropped = r.entries.splice(0, r.entries.length - this.#maxKept);
    if (dropped.some((e) => e.kind === 'message')) r.hasOlder = true;
  }
}
