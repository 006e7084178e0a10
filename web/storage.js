// What a reload of the page needs, kept in the tab's sessionStorage: the
// session token (never the password) and the rooms to resume. sessionStorage
// ends with the tab and is never sent to the server, unlike a cookie;
// localStorage would outlive the tab, so the token is never put there.
// Storage may be turned off or full: then the page simply forgets on reload.

const SESSION_KEY = 'chat.session';
const ROOMS_KEY = 'chat.rooms';

/** The saved `{user, token}`, or null (none, or not well formed). */
export function loadSession(storage) {
  const saved = read(storage, SESSION_KEY);
  if (typeof saved?.user !== 'string' || !saved.user) return null;
  if (typeof saved.token !== 'string' || !saved.token) return null;
  return { user: saved.user, token: saved.token };
}

/** Keeps the session of a password login for the reloads of this tab. */
export function saveSession(storage, { user, token }) {
  write(storage, SESSION_KEY, { user, token });
}

/** The saved rooms snapshot (`ChatModel.snapshot()`), or null. The model
 * checks each room as it takes it back. */
export function loadRooms(storage) {
  const saved = read(storage, ROOMS_KEY);
  return typeof saved === 'object' && saved !== null && Array.isArray(saved.rooms) ? saved : null;
}

/** Keeps the rooms to resume after a reload. */
export function saveRooms(storage, snapshot) {
  write(storage, ROOMS_KEY, snapshot);
}

/** Forgets all of it (sign out, or a session the server ended). */
export function forget(storage) {
  try {
    storage?.removeItem(SESSION_KEY);
    storage?.removeItem(ROOMS_KEY);
  } catch {
    // Storage turned off: there was nothing to forget.
  }
}

function read(storage, key) {
  try {
    const text = storage?.getItem(key);
    return typeof text === 'string' ? JSON.parse(text) : null;
  } catch {
    return null; // Turned off, or not ours: as if nothing were saved.
  }
}

function write(storage, key, value) {
  try {
    storage?.setItem(key, JSON.stringify(value));
  } catch {
    // Turned off or full: a reload will ask for the password again.
  }
}
