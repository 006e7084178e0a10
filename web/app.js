// The chat page's wiring: the sign-in form, the session, and the events of
// the page and of the connection, handed to the model (model.js); what the
// model asks for is sent (connection.js) and its state drawn (render.js).

import { ApiError, Connection, postJson, postWithSession } from './connection.js';
import { ChatModel } from './model.js';
import { RoomView, renderMembers, renderRoomList } from './render.js';
import { forget, loadRooms, loadSession, saveRooms, saveSession } from './storage.js';
import { plural } from './view.js';

/** A rejoin the rate limit refused is tried again after this long. */
const REJOIN_RETRY_MS = 1500;
/** docs/protocol.md, section 8. */
const ROOM_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** The room list is asked for again this long after membership changes, so
 * that a burst of joins costs one request (each frame costs a rate token). */
const LIST_DEBOUNCE_MS = 1000;
/** A stand-in `ref` as long as any the model makes, for measuring a frame. */
const LONGEST_REF = 'r'.padEnd(16, '9');

const $ = (id) => document.getElementById(id);
const ui = {
  loginView: $('login-view'),
  loginForm: $('login-form'),
  username: $('username'),
  inviteField: $('invite-field'),
  invite: $('invite'),
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

/** Everything of one signed-in page; replaced whole at sign-in. */
const page = {
  /** The live connection, from sign-in to sign-out. */
  conn: null,
  /** The session token: in memory and in sessionStorage, nowhere else. */
  session: null,
  model: new ChatModel(),
  /** One RoomView per room drawn, by name. */
  views: new Map(),
  /** The room whose log is in the page now. */
  shown: null,
  /** Unsent text typed for each room, kept while another one is open. */
  drafts: new Map(),
  /** Rooms whose next drawing must end at the bottom (the user just sent). */
  follow: new Set(),
  /** The composer takes the focus after the next drawing. */
  focusComposer: false,
  listTimer: null,
  timers: new Set(),
};

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
    if (action === 'register') {
      const invite = ui.invite.value.trim();
      await postJson('/api/register', invite ? { ...credentials, invite } : credentials);
    }
    const { ticket, session } = await postJson('/api/login', credentials);
    ui.password.value = '';
    if (typeof session !== 'string' || !session) throw new Error('the server gave no session');
    saveSession(sessionStorage, { user: credentials.username, token: session });
    enter({ user: credentials.username, token: session }, ticket, null);
  } catch (err) {
    showLoginError(loginErrorText(err));
    if (err instanceof ApiError && err.code === 'invalid_invite') {
      // Shown only once a server asks for one: most never do.
      ui.inviteField.hidden = false;
      setBusy(ui.loginForm, false);
      ui.invite.focus();
    }
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
    case 'invalid_invite':
      return ui.inviteField.hidden || !ui.invite.value.trim()
        ? 'This server creates accounts by invite only. Enter the invite its operator gave you.'
        : 'That invite is unknown, used or expired. Ask the operator for a new one.';
    case 'account_disabled':
      return 'An operator disabled this account; ask them to enable it again.';
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

/**
 * Switches to the chat view on a session: with the login's own ticket right
 * after a password login, or (after a reload) with one minted from the
 * session, resuming the rooms of `saved` (a model snapshot).
 */
function enter(session, ticket, saved) {
  page.session = session.token;
  page.model = new ChatModel();
  if (saved) page.model.restore(saved);
  ui.loginView.hidden = true;
  ui.chatView.hidden = false;
  ui.meName.textContent = session.user;
  page.conn = new Connection(session.token, {
    onState: showConnectionState,
    onWelcome: (payload) => {
      hideChatError();
      apply(page.model.welcome(payload.user));
    },
    onEvent: received,
    onLost: (reason) => apply(page.model.lost(reason)),
    onSessionEnded: (message) => leaveChat(message),
    onFatal: (message) => {
      showChatError(message);
      scheduleRender();
    },
  });
  page.conn.start(ticket);
  render();
  ui.roomInput.focus();
}

ui.signOut.addEventListener('click', () => {
  const session = page.session;
  page.conn?.stop();
  // The session ends on the server too; keepalive lets the request finish
  // even if the tab closes right away. Either answer means it is over.
  if (session) postWithSession('/api/logout', session, { keepalive: true }).catch(() => {});
  leaveChat('');
});

/** Back to the sign-in form, forgetting the session and the rooms;
 * `why` (if any) is said in the form. */
function leaveChat(why) {
  page.conn?.stop();
  page.conn = null;
  page.session = null;
  forget(sessionStorage);
  page.model = new ChatModel();
  for (const view of page.views.values()) view.log.remove();
  page.views.clear();
  page.shown = null;
  page.drafts.clear();
  page.follow.clear();
  clearTimeout(page.listTimer);
  for (const timer of page.timers) clearTimeout(timer);
  page.timers.clear();
  ui.composerInput.value = '';
  hideChatError();
  ui.joinError.textContent = '';
  ui.chatView.hidden = true;
  ui.loginView.hidden = false;
  document.title = 'Chat';
  showLoginError(why);
  if (why && ui.username.value) ui.password.focus();
  else ui.username.focus();
}

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

ui.retryNow.addEventListener('click', () => page.conn?.retryNow());

/** Membership changes that make the room list worth asking for again. */
const CHANGES_MEMBERS = new Set(['joined', 'left', 'member_joined', 'member_left']);

function received(event) {
  apply(page.model.receive(event));
  if (CHANGES_MEMBERS.has(event.type)) refreshRoomListSoon();
}

/** Carries out what the model asked for, keeps what a reload needs, and
 * draws the result. */
function apply(fx) {
  for (const frame of fx.send) {
    // A frame that cannot go now is as good as lost in transit: the model
    // sends what matters again after the next `welcome`.
    page.conn?.send(frame);
  }
  for (const { room, text } of fx.giveBack) giveBack(room, text);
  for (const room of fx.retryJoin) {
    later(REJOIN_RETRY_MS, () => {
      if (page.conn?.connected) apply(page.model.rejoin(room));
    });
  }
  if (fx.joinError) ui.joinError.textContent = fx.joinError;
  if (fx.chatError) showChatError(fx.chatError);
  if (fx.focusComposer) page.focusComposer = true;
  if (page.session) saveRooms(sessionStorage, page.model.snapshot());
  scheduleRender();
}

function later(ms, run) {
  const timer = setTimeout(() => {
    page.timers.delete(timer);
    run();
  }, ms);
  page.timers.add(timer);
}

function refreshRoomListSoon() {
  clearTimeout(page.listTimer);
  page.listTimer = setTimeout(() => {
    if (page.conn?.connected) apply(page.model.listRooms());
  }, LIST_DEBOUNCE_MS);
}

/** Puts an unsent text back where the user typed it: in the box if that
 * room's log is the one shown (the model may have moved on already; the
 * box is saved as its draft when the page follows), else in its draft. */
function giveBack(room, text) {
  if (room === page.shown) {
    const now = ui.composerInput.value;
    ui.composerInput.value = now && now !== text ? `${text}\n${now}` : text;
  } else if (!page.drafts.get(room)) {
    page.drafts.set(room, text);
  }
}

// ------------------------------------------------------------ user actions

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.roomInput.value.trim().replace(/^#/, '');
  if (!ROOM_NAME.test(name)) {
    ui.joinError.textContent = 'Room names are 1 to 64 letters, digits, dots, dashes or underscores.';
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
  if (!page.model.rooms.get(name)?.joined && !page.conn?.connected) {
    ui.joinError.textContent = 'Not connected; try again once the connection is back.';
    return;
  }
  closeDrawers();
  apply(page.model.join(name));
}

ui.leaveRoom.addEventListener('click', () => {
  const room = page.model.current;
  if (!room) return;
  if (!page.conn?.connected) {
    showChatError('Not connected; try again once the connection is back.');
    return;
  }
  apply(page.model.leave(room));
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
  const room = page.model.current;
  const text = ui.composerInput.value;
  if (!room || !text.trim()) return;
  if (!page.conn?.connected) {
    showChatError('Not connected: your message is kept here until the connection is back.');
    return;
  }
  const clientId = newClientId();
  const probe = { type: 'send_message', payload: { room, text, client_id: clientId }, ref: LONGEST_REF };
  if (page.conn.tooBig(probe)) {
    const max = page.conn.limits.max_message_bytes;
    showChatError(`That message is too long: the server takes at most ${Math.floor(max / 1024)} KiB.`);
    return;
  }
  ui.composerInput.value = '';
  hideChatError();
  page.follow.add(room);
  apply(page.model.send(room, text, clientId));
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

/** The view of `name`, made on first use; its buttons act on that room. */
function viewOf(name) {
  let view = page.views.get(name);
  if (!view) {
    view = new RoomView(name, {
      loadOlder: () => apply(page.model.loadOlder(name)),
      retry: (clientId) => {
        if (page.conn?.connected) apply(page.model.retry(name, clientId));
        else showChatError('Not connected; try again once the connection is back.');
      },
      discard: (clientId) => apply(page.model.discard(name, clientId)),
    });
    page.views.set(name, view);
  }
  return view;
}

let renderQueued = false;

/** Draws once for however many events arrive meanwhile (a resume may bring
 * thousands at once): at the next frame, or soon in a tab that draws no
 * frames because it is hidden, so that its title still counts the unread. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  let frame = null;
  let timer = null;
  const run = () => {
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    if (!renderQueued) return;
    render();
  };
  frame = requestAnimationFrame(run);
  timer = setTimeout(run, 100);
}

/** Draws the whole page from the model. */
function render() {
  renderQueued = false;
  const model = page.model;
  const room = model.current === null ? null : model.rooms.get(model.current) ?? null;
  const switched = page.shown !== (room?.name ?? null);
  if (switched) switchLog(room);
  if (room) viewOf(room.name).render(room, { follow: page.follow.delete(room.name) });
  if (switched && room) viewOf(room.name).showStart();
  // Rooms the model forgot take their views along.
  for (const [name, view] of page.views) {
    if (!model.rooms.has(name)) {
      view.log.remove();
      page.views.delete(name);
    }
  }

  const unread = renderRoomList(ui.roomList, ui.roomsEmpty, model, openOrJoin);
  ui.roomsToggleUnread.hidden = unread === 0;
  ui.roomsToggleUnread.textContent = String(unread);
  document.title = unread ? `(${unread}) Chat` : room ? `${room.name} · Chat` : 'Chat';

  ui.noRoom.hidden = room !== null;
  ui.leaveRoom.hidden = room === null;
  ui.roomTitle.textContent = room ? `# ${room.name}` : 'No room open';
  ui.roomMeta.textContent = room ? plural(room.size, 'member') : '';
  ui.composerInput.placeholder = room ? `Message #${room.name}` : 'Join a room to chat';
  ui.composerInput.setAttribute('aria-label', room ? `Message to ${room.name}` : 'Message');
  renderMembers(ui.memberList, room?.members ?? [], model.me, room?.unlisted ?? 0);
  ui.membersToggle.textContent = `Members (${room?.size ?? 0})`;
  updateComposer();

  if (page.focusComposer && room) {
    page.focusComposer = false;
    if (!ui.roomsPane.classList.contains('open')) ui.composerInput.focus();
  }
}

/** Puts the log of `room` (or none) in the page, swapping the drafts. */
function switchLog(room) {
  if (page.shown !== null) {
    page.drafts.set(page.shown, ui.composerInput.value);
    page.views.get(page.shown)?.log.remove();
  }
  page.shown = room?.name ?? null;
  if (room) {
    ui.messageArea.append(viewOf(room.name).log);
    ui.composerInput.value = page.drafts.get(room.name) ?? '';
    page.drafts.delete(room.name);
  } else {
    ui.composerInput.value = '';
  }
  hideChatError();
}

function updateComposer() {
  const room = page.model.current !== null;
  ui.composerInput.disabled = !room;
  // Typing goes on while offline; only sending waits for the connection.
  ui.sendButton.disabled = !room || !page.conn?.connected;
}

function showChatError(text) {
  ui.chatError.textContent = text;
  ui.chatError.hidden = false;
}

function hideChatError() {
  ui.chatError.hidden = true;
  ui.chatError.textContent = '';
}

// ------------------------------------------------------------------ start

/** For test drivers (tests/conformance-client.js): what the model holds of a
 * room, as copies. Read-only; nothing here changes the page. */
Object.defineProperty(window, 'chatDebug', {
  value: Object.freeze({ held: (room) => page.model.held(String(room)) }),
});

// A reload of a signed-in tab goes straight back in, on the saved session.
const saved = loadSession(sessionStorage);
if (saved) {
  ui.username.value = saved.user;
  enter(saved, null, loadRooms(sessionStorage));
} else {
  ui.username.focus();
}
