// An operator disables a signed-in user (`chat-server admin disable`): the
// page is closed with 4003, says why, and does not reconnect, as
// docs/protocol.md asks of clients.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';

import { ChatServer, SERVER_BIN, joinRoom, launchBrowser, openPage, screenshot, signIn, waitForState } from './helpers.js';

let server;
let browser;

before(async () => {
  server = await ChatServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

function admin(...args) {
  const run = spawnSync(SERVER_BIN, ['--data-dir', server.dataDir, 'admin', ...args], { encoding: 'utf8' });
  assert.equal(run.status, 0, `admin ${args.join(' ')}: ${run.stderr}`);
  return run.stdout;
}

test('a disabled user is closed with 4003 and the page stops, saying why', async () => {
  await server.register('alice');
  const alice = await openPage(browser, server);
  try {
    await signIn(alice.page, 'alice');
    await joinRoom(alice.page, 'lobby');
    admin('disable', 'alice');

    await alice.page.locator('#chat-error', { hasText: 'An operator disabled this account' }).waitFor();
    await waitForState(alice.page, 'offline');
    await screenshot(alice.page, 'account-disabled.png');
    // Gone straight to offline: no new socket, no reconnecting state.
    assert.equal(alice.watch.sockets.length, 1);
    const { status, body } = await server.post('/api/login', { username: 'alice', password: 'correct horse battery' });
    assert.equal(status, 403);
    assert.equal(JSON.parse(body).code, 'account_disabled');
    assert.deepEqual(alice.watch.errors.filter((e) => !/Failed to load resource/.test(e)), []);
  } finally {
    await alice.context.close();
  }
});
