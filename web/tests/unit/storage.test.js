// What a reload keeps (storage.js): well-formed values come back, anything
// else reads as nothing, and a storage that refuses never breaks the page.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { forget, loadRooms, loadSession, saveRooms, saveSession } from '../../storage.js';

/** The Storage interface over a Map, as sessionStorage behaves. */
function memoryStorage() {
  const items = new Map();
  return {
    items,
    getItem: (key) => (items.has(key) ? items.get(key) : null),
    setItem: (key, value) => items.set(key, String(value)),
    removeItem: (key) => items.delete(key),
  };
}

test('a session and a rooms snapshot come back as they were saved, and are forgotten together', () => {
  const storage = memoryStorage();
  assert.equal(loadSession(storage), null);
  assert.equal(loadRooms(storage), null);
  saveSession(storage, { user: 'alice', token: 'tok' });
  const snapshot = { rooms: [{ name: 'general', lastSeq: 4, epoch: 'e1' }], current: 'general' };
  saveRooms(storage, snapshot);
  assert.deepEqual(loadSession(storage), { user: 'alice', token: 'tok' });
  assert.deepEqual(loadRooms(storage), snapshot);
  forget(storage);
  assert.equal(storage.items.size, 0);
});

test('what is not well formed reads as nothing', () => {
  const storage = memoryStorage();
  for (const text of ['not json', 'null', '42', '{"user":"alice"}', '{"user":"","token":"t"}', '{"user":"a","token":7}']) {
    storage.setItem('chat.session', text);
    assert.equal(loadSession(storage), null, text);
  }
  for (const text of ['[]', '{"rooms":"general"}', '{}']) {
    storage.setItem('chat.rooms', text);
    assert.equal(loadRooms(storage), null, text);
  }
});

test('a storage that refuses (turned off, or full) is as if nothing were saved', () => {
  const refusing = {
    getItem: () => {
      throw new Error('SecurityError');
    },
    setItem: () => {
      throw new Error('QuotaExceededError');
    },
    removeItem: () => {
      throw new Error('SecurityError');
    },
  };
  saveSession(refusing, { user: 'alice', token: 'tok' });
  saveRooms(refusing, { rooms: [] });
  assert.equal(loadSession(refusing), null);
  assert.equal(loadRooms(refusing), null);
  forget(refusing);
  assert.equal(loadSession(undefined), null);
});
