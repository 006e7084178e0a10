// The chat page: login form, room list, conversation, members and composer.
// It holds the page's state and draws it; connection.js talks to the server.

import { ApiError, Connection, postJson } from './connection.js';
import { atBottom, cleanText, el, formatTime, plural } from './view.js';

/** Messages kept per room; older ones are dropped from the page (and can be
 * loaded again by scrolling up). */
const MAX_KEPT = 500;
/** Older messages asked for per `history` request. */
const PAGE_SIZE = 50;
/** Within this distance of the top of a conversation, older messages load. */
const LOAD_OLDER_PX = 40;
/** A rejoin the rate limit refused is tried again after this long. */
const REJOIN_RETRY_MS = 1500;
/** Consecutive messages of one sender within this time share one header. */
const GROUP_MS = 3 * 60 * 1000;
/** docs/protocol.md, section 8. */
const ROOM_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** The room list is asked for again this long after membership changes, so
 * that a burst of joins costs one request (each frame costs a rate token). */
const LIST_DEBOUNCE_MS = 1000;

const $ = (id) => document.getElementById(id);
const ui = {
  loginView: $('login-view'),
  loginForm: $('login-form'),
  username: $('username'),
  password: $('password'),
  loginError: $('login-error'),
  chatView: $('chat-view'),
  banner: $('banner'),
  bannerText: $('banner-text'),
  retryNow: $('retry-now'),
  meName: $('me-name'),
  signOut: $('sign-out'),
  roomsToggle: $('rooms-toggle'),
  roomsToggleUnread: $('rooms-toggle-unread'),
  roomsPane: $('rooms-pane'),
  joinForm: $('join-form'),
  roomInput: $('room-input'),
  joinError: $('join-error'),
  roomList: $('room-list'),
  roomsEmpty: $('rooms-empty'),
  roomTitle: $('room-title'),
  roomMeta: $('room-meta'),
  membersToggle: $('members-toggle'),
  membersPane: $('members-pane'),
  memberList: $('member-list'),
  leaveRoom: $('leave-room'),
  messageArea: $('message-area'),
  noRoom: $('no-room'),
  chatError: $('chat-error'),
  composer: $('composer'),
  composerInput: $('composer-input'),
  sendButton: $('send-button'),
};

/** What the page knows of one room. */
class Room {
  constructor(name) {
    this.name = name;
    /** In the room, or to rejoin after a reconnect. */
    this.joined = false;
    /** A member on the current connection (its `joined` came). */
    this.live = false;
    /** A resume (`join_room` with `since`) is catching up. */
    this.resuming = false;
    /** Members (each once, sorted), while joined. */
    this.members = [];
    /** Distinct users in the room as of the last `room_list`; null: unlisted. */
    this.count = null;
    /** `last_activity` from the last `room_list` (ISO string or null). */
    this.lastActivity = null;
    /** Messages from others that arrived while the room was not shown. */
    this.unread = 0;
    /** The first of those, where the "new messages" line goes. */
    this.firstUnread = null;
    /** The "N new messages" line now in the log, if any. */
    this.marker = null;
    /** Messages caught up by a resume while this room was shown. */
    this.caughtUp = 0;
    /** The newest `seq` received: a reconnect resumes after it. */
    this.lastSeq = 0;
    /** Whether older messages than the oldest shown may exist. */
    this.hasOlder = false;
    this.loadingOlder = false;
    /** Messages sent and not yet confirmed, oldest first:
     * `{clientId, text, seq, item}` (seq from the `ack`, item: the bubble). */
    this.outbox = [];
    /** Unsent text typed for this room, kept while another room is open. */
    this.draft = '';
    /** The conversation, kept as its own element so switching rooms is cheap. */
    this.log = el('ol', {
      className: 'messages',
      tabIndex: 0,
      attrs: { role: 'log', 'aria-live': 'polite', 'aria-label': `Messages in ${name}` },
    });
    this.olderButton = el('button', { type: 'button', className: 'load-older-button' }, 'Load older messages');
    this.olderButton.addEventListener('click', () => loadOlder(this));
    /** Always the log's first item; hidden when there is nothing older. */
    this.loader = el('li', { className: 'load-older', hidden: true }, this.olderButton);
    this.log.append(this.loader);
    this.log.addEventListener('scroll', () => {
      if (this.log.scrollTop < LOAD_OLDER_PX) loadOlder(this);
    });
    /** The previous message appended, for grouping; null after a notice. */
    this.last = null;
    /** The day (toDateString) of the newest message appended. */
    this.lastDay = null;
  }

  /** Members now: exact while joined, else the last listed count. */
  get size() {
    return this.joined ? this.members.length : this.count;
  }
}

const state = {
  /** The live connection, from sign-in to sign-out. */
  conn: null,
  me: null,
  /** Every room the page knows, by name. */
  rooms: new Map(),
  current: null,
  /** A room to open once its `joined` arrives. */
  openOnJoin: null,
  /** Set once the first `welcome` came: later ones are reconnects. */
  everConnected: false,
  listTimer: null,
};

function room(name) {
  let r = state.rooms.get(name);
  if (!r) {
    r = new Room(name);
    state.rooms.set(name, r);
  }
  return r;
}

// ---------------------------------------------------------------- sign in

ui.loginForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const action = e.submitter?.value ?? 'login';
  const credentials = { username: ui.username.value.trim(), password: ui.password.value };
  if (!credentials.username || !credentials.password) {
    showLoginError('Enter a user name and a password.');
    return;
  }
  setBusy(ui.loginForm, true);
  showLoginError('');
  try {
    if (action === 'register') await postJson('/api/register', credentials);
    const { ticket } = await postJson('/api/login', credentials);
    startSession(credentials, ticket);
  } catch (err) {
    showLoginError(loginErrorText(err));
  } finally {
    setBusy(ui.loginForm, false);
  }
});

function loginErrorText(err) {
  if (!(err instanceof ApiError)) return 'The server cannot be reached. Is it running?';
  switch (err.code) {
    case 'invalid_credentials':
      return 'Wrong user name or password.';
    case 'username_taken':
      return 'That user name is taken. Choose another, or sign in.';
    case 'too_many_attempts':
      return `Too many failed attempts. Try again in ${plural(err.retryAfterSecs ?? 60, 'second')}.`;
    case 'registration_disabled':
      return 'This server does not allow sign-ups. Ask its operator for an account.';
    default:
      return err.message;
  }
}

function showLoginError(text) {
  ui.loginError.textContent = text;
}

function setBusy(form, busy) {
  for (const control of form.elements) control.disabled = busy;
  form.setAttribute('aria-busy', String(busy));
}

/** Switches to the chat view with credentials kept in memory only (never in
 * storage): each reconnect logs in again for a fresh ticket. */
function startSession(credentials, firstTicket) {
  ui.password.value = '';
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.meName.textContent = credentials.username;
  state.conn = new Connection(credentials, {
    onState: showConnectionState,
    onWelcome: welcome,
    onEvent: handle,
    onLost: lost,
    onFatal: (message) => {
      showChatError(message);
      render();
    },
  });
  state.conn.start(firstTicket);
  render();
  ui.roomInput.focus();
}

ui.signOut.addEventListener('click', () => {
  state.conn?.stop();
  state.conn = null;
  state.me = null;
  state.rooms.clear();
  state.current = null;
  state.openOnJoin = null;
  state.everConnected = false;
  ui.composerInput.value = '';
  hideChatError();
  clearTimeout(state.listTimer);
  for (const log of ui.messageArea.querySelectorAll('.messages')) log.remove();
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  document.title = 'Chat';
  ui.username.focus();
});

// ------------------------------------------------------------- connection

function showConnectionState({ state: s, attempt, retryInMs, reason }) {
  ui.banner.dataset.state = s;
  let text;
  switch (s) {
    case 'connecting':
      text = 'Connecting…';
      break;
    case 'connected':
      text = 'Connected';
      break;
    case 'reconnecting':
      text =
        retryInMs === undefined
          ? `Reconnecting… (attempt ${attempt})`
          : `Offline: ${reason}. Retrying in ${Math.max(1, Math.round(retryInMs / 1000))} s`;
      break;
    default:
      text = `Offline: ${reason}`;
  }
  ui.bannerText.textContent = text;
  ui.retryNow.hidden = !(s === 'reconnecting' && retryInMs !== undefined);
  updateComposer();
}

ui.retryNow.addEventListener('click', () => state.conn?.retryNow());

function welcome(payload) {
  state.me = String(payload.user);
  ui.meName.textContent = state.me;
  const rejoin = [...state.rooms.values()].filter((r) => r.joined);
  // The open room first, so its conversation resumes soonest.
  rejoin.sort((a, b) => (b === state.current) - (a === state.current));
  for (const r of rejoin) rejoinRoom(r);
  if (state.everConnected && state.current) notice(state.current, 'Reconnected.');
  state.everConnected = true;
  hideChatError();
  render();
}

/** Joins a room again on a new connection: a resume after the newest message
 * we have (the server sends what we missed, once), or a plain join for a room
 * we never received anything from. */
function rejoinRoom(r) {
  r.live = false;
  r.resuming = r.lastSeq > 0;
  r.caughtUp = 0;
  const payload = r.resuming ? { room: r.name, since: r.lastSeq } : { room: r.name };
  return state.conn?.send('join_room', payload);
}

function lost(unanswered, reason) {
  if (state.current) notice(state.current, `Connection lost: ${reason}.`);
  for (const r of state.rooms.values()) {
    r.live = false;
    r.resuming = false;
    r.loadingOlder = false;
    setOlderButton(r);
  }
  // Unconfirmed messages stay where they are, as "sending…": they go again,
  // with the same client_id, once their room is joined again. The server
  // stores each client_id once, so a message that did arrive is not doubled.
  render();
}

/** Every event after `welcome`; `request` is ours that it answers, if any. */
function handle({ type, payload }, request) {
  switch (type) {
    case 'joined':
      return joined(payload, request);
    case 'left':
      return left(payload.room);
    case 'member_joined':
      return memberChanged(payload.room, payload.user, true);
    case 'member_left':
      return memberChanged(payload.room, payload.user, false);
    case 'new_message':
      return newMessage(payload);
    case 'ack':
      return acked(payload);
    case 'history_page':
      return historyPage(payload);
    case 'history_gap':
      return historyGap(payload);
    case 'room_list':
      return roomList(payload.rooms);
    case 'error':
      return serverError(payload, request);
    default:
      // A newer server's event: ignore it, as the protocol asks.
      return undefined;
  }
}

function joined({ room: name, members, last_seq: lastSeq, history }, request) {
  const r = room(name);
  const first = !r.joined;
  r.joined = true;
  r.live = true;
  const resumed = r.resuming || request?.payload?.since !== undefined;
  r.resuming = false;
  r.caughtUp = 0;
  r.members = [...new Set((members ?? []).map(String))].sort(byteOrder);
  const newest = Number(lastSeq ?? 0);
  if (resumed && newest < r.lastSeq) {
    // The server's data was reset: its numbers start again.
    notice(r, 'The server’s message history was reset; earlier messages above may not match.');
    r.lastSeq = newest;
  }
  // Scrollback on a plain join; a resume's messages came before `joined`.
  const shown = (Array.isArray(history) ? history : []).filter((m) => Number(m.seq) > r.lastSeq);
  if (shown.length) {
    const oldest = Number(shown[0].seq);
    if (r.lastSeq === 0) r.hasOlder = oldest > 1;
    for (const m of shown) addMessage(r, m, { history: true });
  }
  r.lastSeq = Math.max(r.lastSeq, newest);
  if (first) notice(r, `You joined ${name}.`);
  setOlderButton(r);
  resendPending(r);
  const asked = state.openOnJoin === name;
  if (asked || !state.current) {
    state.openOnJoin = null;
    open(r);
  }
  refreshRoomListSoon();
  render();
  // Only now is the box enabled; a join the user asked for leads straight to it.
  if (asked && !ui.roomsPane.classList.contains('open')) ui.composerInput.focus();
}

function left(name) {
  const r = state.rooms.get(name);
  if (!r) return;
  r.joined = false;
  r.live = false;
  r.resuming = false;
  r.members = [];
  r.unread = 0;
  r.firstUnread = null;
  // Whatever was still unconfirmed goes back to the box.
  for (const p of r.outbox.splice(0)) {
    p.item.remove();
    giveBack(r.name, p.text);
  }
  setOlderButton(r);
  if (state.current === r) {
    const next = [...state.rooms.values()].find((other) => other.joined);
    open(next ?? null);
  }
  refreshRoomListSoon();
  render();
}

function memberChanged(name, user, present) {
  const r = state.rooms.get(name);
  if (!r?.live) return;
  const others = r.members.filter((m) => m !== user);
  r.members = present ? [...others, String(user)].sort(byteOrder) : others;
  notice(r, present ? `${user} joined.` : `${user} left.`);
  refreshRoomListSoon();
  render();
}

function newMessage(m) {
  const r = state.rooms.get(m.room);
  if (!r?.joined) return;
  addMessage(r, m);
  renderRooms();
}

/** Shows a live or caught-up message once: a `seq` we already have is
 * ignored (the server never repeats one; this is a safety net). */
function addMessage(r, m, { history = false } = {}) {
  const seq = Number(m.seq);
  if (!Number.isSafeInteger(seq) || seq <= r.lastSeq) return;
  r.lastSeq = seq;
  const own = m.from === state.me;
  // Our own message's bubble, if this is the copy of one we sent.
  const mine = own ? r.outbox.findIndex((p) => p.seq === seq) : -1;
  if (mine >= 0) r.outbox.splice(mine, 1)[0].item.remove();
  const item = messageItem(r, m, own);
  append(r, item, own && !history);
  if (own || history) return;
  if (r !== state.current) {
    if (r.unread === 0) r.firstUnread = item;
    r.unread += 1;
  } else if (r.resuming) {
    // Caught up while this room was shown but the connection was down.
    r.caughtUp += 1;
    if (r.caughtUp === 1) placeMarker(r, item, 1);
    else r.marker.textContent = plural(r.caughtUp, 'new message');
  }
}

function acked({ room: name, seq, client_id: clientId }) {
  const r = state.rooms.get(name);
  const p = r?.outbox.find((q) => q.clientId === clientId);
  if (!p) return;
  p.seq = Number(seq);
  // A resend of a message that had arrived: its copy is already shown.
  if (p.seq <= r.lastSeq) {
    r.outbox.splice(r.outbox.indexOf(p), 1);
    p.item.remove();
  }
}

function historyGap({ room: name, from, to }) {
  const r = state.rooms.get(name);
  if (!r?.joined) return;
  const text =
    Number(from) === Number(to)
      ? `Message ${from} is no longer available.`
      : `Messages ${from}–${to} are no longer available.`;
  append(r, el('li', { className: 'notice gap', attrs: { role: 'note' } }, text));
  r.last = null;
  r.lastSeq = Math.max(r.lastSeq, Number(to) || 0);
}

/** Asks for the page of messages before the oldest one shown. */
function loadOlder(r) {
  if (!r.hasOlder || r.loadingOlder || !r.live) return;
  const oldest = oldestSeq(r);
  if (oldest === null) {
    r.hasOlder = false;
    setOlderButton(r);
    return;
  }
  if (state.conn?.send('history', { room: r.name, before: oldest, limit: PAGE_SIZE })) return;
  r.loadingOlder = true;
  setOlderButton(r);
}

function historyPage({ room: name, messages, first_seq: firstSeq }) {
  const r = state.rooms.get(name);
  if (!r) return;
  r.loadingOlder = false;
  const oldest = oldestSeq(r);
  const page = (Array.isArray(messages) ? messages : []).filter(
    (m) => oldest === null || Number(m.seq) < oldest,
  );
  r.hasOlder = page.length > 0 && firstSeq !== null && firstSeq !== undefined && Number(page[0].seq) > Number(firstSeq);
  keepInView(r, () => {
    if (page.length) prepend(r, page);
    setOlderButton(r);
  });
}

/** Runs `change` (above what is shown) keeping the oldest message shown at
 * the same place on screen. */
function keepInView(r, change) {
  const anchor = r.log.querySelector('.msg[data-seq]');
  if (!anchor) {
    change();
    return;
  }
  const offset = () => anchor.getBoundingClientRect().top - r.log.getBoundingClientRect().top;
  const before = offset();
  change();
  r.log.scrollTop += offset() - before;
}

function roomList(listed) {
  const names = new Set();
  for (const { name, members, last_activity: lastActivity } of listed) {
    names.add(name);
    const r = room(name);
    r.count = members;
    r.lastActivity = lastActivity ?? null;
  }
  for (const [name, r] of state.rooms) {
    if (names.has(name)) continue;
    r.count = null;
    // A room with neither members nor messages has ceased to exist; forget
    // it unless it is ours.
    if (!r.joined && r !== state.current) state.rooms.delete(name);
  }
  renderRooms();
}

function serverError({ code, message }, request) {
  const what = request?.type;
  if (what === 'join_room') {
    const r = state.rooms.get(request.payload.room);
    if (r?.joined && code === 'rate_limited') {
      // A rejoin after a reconnect: try again shortly.
      setTimeout(() => {
        if (r.joined && !r.live && state.conn?.connected) rejoinRoom(r);
      }, REJOIN_RETRY_MS);
      return;
    }
    ui.joinError.textContent =
      code === 'too_many_rooms' ? 'You are in as many rooms as the server allows; leave one first.' : message;
    // A rejoin the server refused: stop pretending to be in that room.
    if (r?.joined) left(r.name);
    return;
  }
  if (what === 'send_message') {
    const r = state.rooms.get(request.payload.room);
    const i = r ? r.outbox.findIndex((p) => p.clientId === request.payload.client_id) : -1;
    if (i < 0) return; // Confirmed meanwhile, or given back already.
    const [p] = r.outbox.splice(i, 1);
    p.item.remove();
    giveBack(r.name, p.text);
    const why =
      code === 'rate_limited'
        ? 'You are sending too fast'
        : code === 'not_in_room'
          ? 'You are not in that room any more'
          : message;
    showChatError(`Not sent: ${why}. Your message is back in the box.`);
    return;
  }
  if (what === 'history') {
    const r = state.rooms.get(request.payload.room);
    if (r) {
      r.loadingOlder = false;
      setOlderButton(r);
    }
    if (code === 'rate_limited' || code === 'not_in_room') return; // Scrolling up asks again.
  }
  if (what === 'list_rooms' && code === 'rate_limited') return; // Asked again later anyway.
  showChatError(message);
}

/** Puts an unsent text back where the user typed it. */
function giveBack(name, text) {
  const r = state.rooms.get(name);
  if (!r) return;
  if (r === state.current) {
    const now = ui.composerInput.value;
    ui.composerInput.value = now && now !== text ? `${text}\n${now}` : text;
  } else if (!r.draft) {
    r.draft = text;
  }
}

/** Sends again, with their client_id, the messages of `r` never confirmed. */
function resendPending(r) {
  for (const p of r.outbox) {
    if (p.seq !== null) continue; // Confirmed; its copy is on its way.
    sendPending(r, p);
  }
}

function sendPending(r, p) {
  if (!state.conn) return 'offline';
  return state.conn.send('send_message', { room: r.name, text: p.text, client_id: p.clientId });
}

function refreshRoomListSoon() {
  clearTimeout(state.listTimer);
  state.listTimer = setTimeout(() => state.conn?.send('list_rooms', {}), LIST_DEBOUNCE_MS);
}

// ------------------------------------------------------------ user actions

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.roomInput.value.trim().replace(/^#/, '');
  if (!ROOM_NAME.test(name)) {
    ui.joinError.textContent =
      'Room names are 1 to 64 letters, digits, dots, dashes or underscores.';
    ui.roomInput.focus();
    return;
  }
  ui.roomInput.value = '';
  openOrJoin(name);
});

ui.roomInput.addEventListener('input', () => {
  ui.joinError.textContent = '';
});

function openOrJoin(name) {
  ui.joinError.textContent = '';
  const r = state.rooms.get(name);
  if (r?.joined) {
    open(r);
    closeDrawers();
    ui.composerInput.focus();
    return;
  }
  const why = state.conn?.send('join_room', { room: name });
  if (why) {
    ui.joinError.textContent = 'Not connected; try again once the connection is back.';
    return;
  }
  state.openOnJoin = name;
  closeDrawers();
}

ui.leaveRoom.addEventListener('click', () => {
  if (!state.current) return;
  if (state.conn?.send('leave_room', { room: state.current.name })) {
    showChatError('Not connected; try again once the connection is back.');
  }
});

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  sendComposed();
});

ui.composerInput.addEventListener('keydown', (e) => {
  // Enter sends, Shift+Enter is a new line; Enter that confirms an IME
  // composition (Japanese, Chinese...) is neither.
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    sendComposed();
  }
});

ui.composerInput.addEventListener('input', hideChatError);

function sendComposed() {
  const r = state.current;
  const text = ui.composerInput.value;
  if (!r || !text.trim()) return;
  if (!state.conn?.connected) {
    showChatError('Not connected: your message is kept here until the connection is back.');
    return;
  }
  const p = { clientId: newClientId(), text, seq: null, item: null };
  if (state.conn.tooBig('send_message', { room: r.name, text, client_id: p.clientId })) {
    const max = state.conn.limits.max_message_bytes;
    showChatError(`That message is too long: the server takes at most ${Math.floor(max / 1024)} KiB.`);
    return;
  }
  // While its room is rejoining, the message waits as "sending…" and goes
  // once the room's `joined` arrives (resendPending).
  if (r.live && sendPending(r, p)) {
    showChatError('Not connected: your message is kept here until the connection is back.');
    return;
  }
  p.item = pendingItem(text);
  r.outbox.push(p);
  r.log.append(p.item);
  r.log.scrollTop = r.log.scrollHeight;
  ui.composerInput.value = '';
  hideChatError();
}

/** A random id for a message, so that resending it can never double it. */
function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `w-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

ui.roomsToggle.addEventListener('click', () => toggleDrawer(ui.roomsToggle, ui.roomsPane));
ui.membersToggle.addEventListener('click', () => toggleDrawer(ui.membersToggle, ui.membersPane));

function toggleDrawer(button, pane) {
  const opening = !pane.classList.contains('open');
  closeDrawers();
  pane.classList.toggle('open', opening);
  button.setAttribute('aria-expanded', String(opening));
  if (opening) pane.querySelector('input, button')?.focus();
}

function closeDrawers() {
  for (const [button, pane] of [
    [ui.roomsToggle, ui.roomsPane],
    [ui.membersToggle, ui.membersPane],
  ]) {
    pane.classList.remove('open');
    button.setAttribute('aria-expanded', 'false');
  }
}

document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && document.querySelector('.pane.open')) {
    closeDrawers();
    ui.composerInput.focus();
  }
});

// ------------------------------------------------------------------ drawing

/** Shows `r`'s conversation (or none). */
function open(r) {
  if (state.current === r) return;
  if (state.current) state.current.draft = ui.composerInput.value;
  state.current?.log.remove();
  state.current = r;
  if (r) {
    ui.messageArea.append(r.log);
    r.marker?.remove();
    r.marker = null;
    if (r.unread > 0) {
      // Where what arrived meanwhile begins, scrolled into view.
      placeMarker(r, r.firstUnread?.isConnected ? r.firstUnread : null, r.unread);
      r.log.scrollTop = Math.max(0, r.marker.offsetTop - r.log.offsetTop - 16);
    } else {
      r.log.scrollTop = r.log.scrollHeight;
    }
    r.unread = 0;
    r.firstUnread = null;
    ui.composerInput.value = r.draft;
    r.draft = '';
  } else {
    ui.composerInput.value = '';
  }
  hideChatError();
  render();
}

/** Puts the "N new messages" line before `item` (null: at the top). */
function placeMarker(r, item, count) {
  r.marker?.remove();
  r.marker = el('li', { className: 'unread-marker', attrs: { role: 'separator' } }, plural(count, 'new message'));
  r.log.insertBefore(r.marker, item ?? r.loader.nextSibling);
}

function render() {
  renderRooms();
  renderConversation();
  renderMembers();
  updateComposer();
}

function renderRooms() {
  const rooms = [...state.rooms.values()].sort((a, b) => byteOrder(a.name, b.name));
  ui.roomList.replaceChildren(
    ...rooms.map((r) => {
      const size = r.size;
      const label = [
        r.name,
        size === null ? null : plural(size, 'member'),
        r.joined ? 'joined' : 'not joined',
        r.unread ? plural(r.unread, 'unread message') : null,
        r.lastActivity ? `last message ${activityText(r.lastActivity).long}` : null,
      ]
        .filter(Boolean)
        .join(', ');
      const button = el(
        'button',
        {
          type: 'button',
          className: `room-button${r.joined ? ' joined' : ''}`,
          attrs: { 'aria-label': label, ...(r === state.current ? { 'aria-current': 'true' } : {}) },
          dataset: { room: r.name },
        },
        el('span', { className: 'room-hash', attrs: { 'aria-hidden': 'true' } }, '#'),
        el('span', { className: 'room-name' }, r.name),
        r.joined ? el('span', { className: 'joined-mark', title: 'Joined' }, 'joined') : null,
        r.unread ? el('span', { className: 'badge unread' }, String(r.unread)) : null,
        r.lastActivity
          ? el(
              'time',
              { className: 'room-activity', dateTime: String(r.lastActivity), title: `Last message: ${activityText(r.lastActivity).long}` },
              activityText(r.lastActivity).short,
            )
          : null,
        size === null ? null : el('span', { className: 'room-count', title: plural(size, 'member') }, String(size)),
      );
      button.addEventListener('click', () => openOrJoin(r.name));
      return el('li', {}, button);
    }),
  );
  ui.roomsEmpty.hidden = rooms.length > 0;
  const unread = rooms.reduce((sum, r) => sum + r.unread, 0);
  ui.roomsToggleUnread.hidden = unread === 0;
  ui.roomsToggleUnread.textContent = String(unread);
  document.title = unread ? `(${unread}) Chat` : state.current ? `${state.current.name} · Chat` : 'Chat';
}

/** When a room was last written in: the time today, else the date. */
function activityText(iso) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return { short: '', long: '' };
  const today = at.toDateString() === new Date().toDateString();
  return {
    short: today
      ? at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : at.toLocaleDateString([], { month: 'short', day: 'numeric' }),
    long: formatTime(iso).long,
  };
}

function renderConversation() {
  const r = state.current;
  ui.noRoom.hidden = r !== null;
  ui.leaveRoom.hidden = r === null;
  ui.roomTitle.textContent = r ? `# ${r.name}` : 'No room open';
  ui.roomMeta.textContent = r ? plural(r.members.length, 'member') : '';
  ui.composerInput.placeholder = r ? `Message #${r.name}` : 'Join a room to chat';
  ui.composerInput.setAttribute('aria-label', r ? `Message to ${r.name}` : 'Message');
}

function renderMembers() {
  const members = state.current?.members ?? [];
  ui.memberList.replaceChildren(
    ...members.map((name) =>
      el(
        'li',
        { className: name === state.me ? 'member me' : 'member' },
        avatar(name),
        el('bdi', {}, name),
        name === state.me ? el('span', { className: 'you' }, '(you)') : null,
      ),
    ),
  );
  ui.membersToggle.textContent = `Members (${members.length})`;
}

function updateComposer() {
  const room = state.current !== null;
  ui.composerInput.disabled = !room;
  // Typing goes on while offline; only sending waits for the connection.
  ui.sendButton.disabled = !room || !state.conn?.connected;
}

function showChatError(text) {
  ui.chatError.textContent = text;
  ui.chatError.hidden = false;
}

function hideChatError() {
  ui.chatError.hidden = true;
  ui.chatError.textContent = '';
}

/** Adds an item to a room's log (above any "sending…" bubbles), keeping the
 * view at the bottom if it was. */
function append(r, item, forceScroll = false) {
  const follow = forceScroll || atBottom(r.log);
  r.log.insertBefore(item, r.outbox.find((p) => p.item?.isConnected)?.item ?? null);
  let trimmed = false;
  while (r.log.childElementCount > MAX_KEPT + 1) {
    r.loader.nextElementSibling.remove();
    trimmed = true;
  }
  if (trimmed && !r.hasOlder) {
    r.hasOlder = true;
    setOlderButton(r);
  }
  if (follow) r.log.scrollTop = r.log.scrollHeight;
}

function notice(r, text) {
  r.last = null;
  append(r, el('li', { className: 'notice' }, text));
}

/** A message's item, preceded in the log by a day line when the day changes. */
function messageItem(r, m, own) {
  const day = new Date(m.sent_at).toDateString();
  if (r.lastDay !== day) {
    append(r, dayItem(m.sent_at));
    r.last = null;
  }
  r.lastDay = day;
  const item = renderMessage(m, own, r.last);
  r.last = { from: m.from, at: new Date(m.sent_at), day };
  return item;
}

function dayItem(sentAt) {
  const at = new Date(sentAt);
  return el('li', { className: 'day', dataset: { day: at.toDateString() } }, at.toLocaleDateString([], { dateStyle: 'medium' }));
}

/** One message; `previous` (or null) is the one above it, for grouping. */
function renderMessage(m, own, previous) {
  const at = new Date(m.sent_at);
  const day = at.toDateString();
  const grouped = previous !== null && previous.from === m.from && previous.day === day && at - previous.at < GROUP_MS;
  const time = formatTime(m.sent_at);
  return el(
    'li',
    {
      className: `msg${own ? ' own' : ''}${grouped ? ' grouped' : ''}`,
      dataset: { id: String(m.id), seq: String(m.seq) },
    },
    own || grouped ? null : avatar(m.from),
    el(
      'div',
      { className: 'body' },
      grouped
        ? null
        : el(
            'div',
            { className: 'meta' },
            el('bdi', { className: 'from' }, own ? 'You' : String(m.from)),
            el('time', { dateTime: String(m.sent_at), title: time.long }, time.short),
          ),
      el('p', { className: 'text', dir: 'auto' }, cleanText(m.text)),
      grouped ? el('time', { className: 'grouped-time', dateTime: String(m.sent_at), title: time.long }, time.short) : null,
    ),
  );
}

/** Our own message before the server confirmed it. */
function pendingItem(text) {
  return el(
    'li',
    { className: 'msg own pending' },
    el(
      'div',
      { className: 'body' },
      el('div', { className: 'meta' }, el('bdi', { className: 'from' }, 'You'), el('span', { className: 'status' }, 'Sending…')),
      el('p', { className: 'text', dir: 'auto' }, cleanText(text)),
    ),
  );
}

/** Puts a page of older messages (oldest first) above what is shown. */
function prepend(r, page) {
  const items = [];
  let previous = null;
  let lastDay = null;
  for (const m of page) {
    const day = new Date(m.sent_at).toDateString();
    if (day !== lastDay) {
      items.push(dayItem(m.sent_at));
      previous = null;
    }
    lastDay = day;
    items.push(renderMessage(m, m.from === state.me, previous));
    previous = { from: m.from, at: new Date(m.sent_at), day };
  }
  const next = r.loader.nextElementSibling;
  // The day line that used to open the log is now said by the page's own.
  if (next?.classList.contains('day') && next.dataset.day === lastDay) next.remove();
  r.loader.after(...items);
  if (r.lastDay === null) r.lastDay = lastDay;
}

/** The smallest `seq` shown in `r`, or null. */
function oldestSeq(r) {
  const first = r.log.querySelector('.msg[data-seq]');
  return first ? Number(first.dataset.seq) : null;
}

function setOlderButton(r) {
  r.loader.hidden = !r.hasOlder;
  r.olderButton.disabled = r.loadingOlder || !r.live;
  r.olderButton.textContent = r.loadingOlder ? 'Loading older messages…' : 'Load older messages';
  r.log.setAttribute('aria-busy', String(r.loadingOlder));
}

/** A round badge with the name's initial, coloured by a hash of the name so
 * each person keeps the same colour (classes, since the CSP forbids inline style). */
function avatar(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return el('span', { className: `avatar hue-${hash % 8}`, attrs: { 'aria-hidden': 'true' } }, name.slice(0, 1).toUpperCase());
}

/** The server sorts names by byte value; so do we, for the same order. */
function byteOrder(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

ui.username.focus();
