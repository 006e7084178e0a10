// Unit tests of the connection module's pure parts (no browser needed).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { retryDelay, socketUrl } from '../../connection.js';

test('reconnect delays grow exponentially, are capped, and are jittered', () => {
  // With the lowest and highest random draws: half the ceiling up to all of it.
  assert.deepEqual([1, 2, 3, 4].map((n) => retryDelay(n, () => 0)), [250, 500, 1000, 2000]);
  assert.deepEqual([1, 2, 3, 4].map((n) => retryDelay(n, () => 1)), [500, 1000, 2000, 4000]);
  assert.equal(retryDelay(50, () => 1), 15000, 'capped');
  assert.equal(retryDelay(50, () => 0), 7500, 'jitter stays below the cap');
  const draws = new Set(Array.from({ length: 20 }, () => retryDelay(6)));
  assert.ok(draws.size > 1, 'clients dropped together must not all retry at the same moment');
});

test('the socket URL follows the page: ws on http, wss on https', () => {
  assert.equal(socketUrl('abc', { protocol: 'http:', host: '127.0.0.1:8080' }), 'ws://127.0.0.1:8080/ws?ticket=abc');
  assert.equal(socketUrl('a+b', { protocol: 'https:', host: 'chat.example' }), 'wss://chat.example/ws?ticket=a%2Bb');
});
