// The chat page: login form, room list, conversation, members and composer.
// It holds the page's state and draws it; connection.js talks to the server.

import { ApiError, Connection, postJson } from './connection.js';
import { atBottom, cleanText, el, formatTime, plural } from './view.js';

/** Messages kept per room; older ones are dropped from the page. */
const MAX_KEPT = 500;
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
    /** In the room on this connection, or to rejoin after a reconnect. */
    this.joined = false;
    /** Members (each once, sorted), while joined. */
    this.members = [];
    /** Distinct users in the room as of the last `room_list`; null: unlisted. */
    this.count = null;
    this.unread = 0;
    /** Unsent text typed for this room, kept while another room is open. */
    this.draft = '';
    /** The conversation, kept as its own element so switching rooms is cheap. */
    this.log = el('ol', {
      className: 'messages',
      tabIndex: 0,
      attrs: { role: 'log', 'aria-live': 'polite', 'aria-label': `Messages in ${name}` },
    });
    this.seen = new Set();
    this.last = null;
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
  for (const r of rejoin) state.conn.send('join_room', { room: r.name });
  if (state.everConnected && state.current) {
    notice(state.current, 'Reconnected. Messages sent while you were away are not shown.');
  }
  state.everConnected = true;
  hideChatError();
  render();
}

function lost(unanswered, reason) {
  if (state.current) notice(state.current, `Connection lost: ${reason}.`);
  // A message the server never confirmed may not have arrived: give it back.
  const unsent = unanswered.filter((req) => req.type === 'send_message');
  for (const req of unsent) giveBack(req.payload.room, req.payload.text);
  if (unsent.length) {
    showChatError('The connection dropped before your message was confirmed; it is back in the box.');
  }
  render();
}

/** Every event after `welcome`; `request` is ours that it answers, if any. */
function handle({ type, payload }, request) {
  switch (type) {
    case 'joined':
      return joined(payload.room, payload.members);
    case 'left':
      return left(payload.room);
    case 'member_joined':
      return memberChanged(payload.room, payload.user, true);
    case 'member_left':
      return memberChanged(payload.room, payload.user, false);
    case 'new_message':
      return newMessage(payload);
    case 'room_list':
      return roomList(payload.rooms);
    case 'error':
      return serverError(payload, request);
    default:
      // A newer server's event: ignore it, as the protocol asks.
      return undefined;
  }
}

function joined(name, members) {
  const r = room(name);
  const first = !r.joined;
  r.joined = true;
  r.members = [...new Set(members.map(String))].sort(byteOrder);
  if (first) notice(r, `You joined ${name}.`);
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
  r.members = [];
  r.unread = 0;
  if (state.current === r) {
    const next = [...state.rooms.values()].find((other) => other.joined);
    open(next ?? null);
  }
  refreshRoomListSoon();
  render();
}

function memberChanged(name, user, present) {
  const r = state.rooms.get(name);
  if (!r?.joined) return;
  const others = r.members.filter((m) => m !== user);
  r.members = present ? [...others, String(user)].sort(byteOrder) : others;
  notice(r, present ? `${user} joined.` : `${user} left.`);
  refreshRoomListSoon();
  render();
}

function newMessage(m) {
  const r = state.rooms.get(m.room);
  if (!r?.joined || r.seen.has(m.id)) return;
  r.seen.add(m.id);
  const own = m.from === state.me;
  append(r, messageItem(r, m, own), own);
  if (r !== state.current && !own) r.unread += 1;
  renderRooms();
}

function roomList(listed) {
  const names = new Set();
  for (const { name, members } of listed) {
    names.add(name);
    room(name).count = members;
  }
  for (const [name, r] of state.rooms) {
    if (names.has(name)) continue;
    r.count = null;
    // A room nobody is in has ceased to exist; forget it unless it is ours.
    if (!r.joined && r !== state.current) state.rooms.delete(name);
  }
  renderRooms();
}

function serverError({ code, message }, request) {
  const what = request?.type;
  if (what === 'join_room') {
    ui.joinError.textContent =
      code === 'too_many_rooms' ? 'You are in as many rooms as the server allows; leave one first.' : message;
    const r = state.rooms.get(request.payload.room);
    // A rejoin the server refused: stop pretending to be in that room.
    if (r?.joined && code !== 'rate_limited') left(r.name);
    return;
  }
  if (what === 'send_message') {
    giveBack(request.payload.room, request.payload.text);
    const why =
      code === 'rate_limited'
        ? 'You are sending too fast'
        : code === 'not_in_room'
          ? 'You are not in that room any more'
          : message;
    showChatError(`Not sent: ${why}. Your message is back in the box.`);
    return;
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
  const why = state.conn ? state.conn.send('send_message', { room: r.name, text }) : 'offline';
  if (why === 'too_big') {
    const max = state.conn.limits.max_message_bytes;
    showChatError(`That message is too long: the server takes at most ${Math.floor(max / 1024)} KiB.`);
    return;
  }
  if (why) {
    showChatError('Not connected: your message is kept here until the connection is back.');
    return;
  }
  ui.composerInput.value = '';
  hideChatError();
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
    r.unread = 0;
    ui.messageArea.append(r.log);
    r.log.scrollTop = r.log.scrollHeight;
    ui.composerInput.value = r.draft;
    r.draft = '';
  } else {
    ui.composerInput.value = '';
  }
  hideChatError();
  render();
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

/** Adds an item to a room's log, keeping the view at the bottom if it was. */
function append(r, item, forceScroll = false) {
  const follow = forceScroll || atBottom(r.log);
  r.log.append(item);
  while (r.log.childElementCount > MAX_KEPT) r.log.firstElementChild.remove();
  if (follow) r.log.scrollTop = r.log.scrollHeight;
}

function notice(r, text) {
  r.last = null;
  append(r, el('li', { className: 'notice' }, text));
}

function messageItem(r, m, own) {
  const at = new Date(m.sent_at);
  const previous = r.last;
  const day = at.toDateString();
  if (previous && previous.day !== day) {
    append(r, el('li', { className: 'day' }, at.toLocaleDateString([], { dateStyle: 'medium' })));
  }
  const grouped = previous !== null && previous.from === m.from && previous.day === day && at - previous.at < GROUP_MS;
  r.last = { from: m.from, at, day };
  const time = formatTime(m.sent_at);
  return el(
    'li',
    { className: `msg${own ? ' own' : ''}${grouped ? ' grouped' : ''}`, dataset: { id: String(m.id) } },
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
