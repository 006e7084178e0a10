// After the server restarts, the page reconnects on its own (fresh ticket,
// backoff), rejoins its rooms, and messages flow again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  say,
  screenshot,
  signIn,
  waitForMember,
  waitForState,
} from './helpers.js';

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

test('the page reconnects by itself after a server restart and chats again', async () => {
  await server.register('alice', 'bob');
  const alice = await openPage(browser, server);
  const bob = await openPage(browser, server);
  try {
    await signIn(alice.page, 'alice');
    await signIn(bob.page, 'bob');
    await joinRoom(alice.page, 'lobby');
    await joinRoom(alice.page, 'second');
    await joinRoom(bob.page, 'lobby');
    await alice.page.locator('#room-list [data-room="lobby"]').click();
    await waitForMember(alice.page, 'bob');
    await say(alice.page, 'before the restart');
    await messageText(bob.page, 'before the restart').waitFor();

    const port = server.port;
    await server.stop();
    // Both pages notice, and say so, while the server is down.
    await waitForState(alice.page, 'reconnecting');
    await waitForState(bob.page, 'reconnecting');
    const banner = await alice.page.locator('#banner').textContent();
    assert.match(banner, /Offline|Reconnecting/);
    // Typing goes on while offline; the message waits in the box.
    await alice.page.locator('#composer-input').fill('typed while offline');
    await alice.page.locator('#composer-input').press('Enter');
    await alice.page.locator('#chat-error', { hasText: 'Not connected' }).waitFor();
    assert.equal(await alice.page.locator('#composer-input').inputValue(), 'typed while offline');
    await screenshot(alice.page, 'reconnecting.png');

    await server.restart();
    assert.equal(server.port, port, 'restarted on the same port');
    await waitForState(alice.page, 'connected');
    await waitForState(bob.page, 'connected');
    // Rejoined both rooms: alice sees bob back in lobby, and second is still hers.
    await waitForMember(alice.page, 'bob');
    await alice.page.getByText('Reconnected.', { exact: false }).first().waitFor();
    const second = alice.page.locator('#room-list [data-room="second"]');
    assert.match(await second.getAttribute('class'), /joined/);

    // What was kept in the box can now be sent, and messages flow both ways.
    await alice.page.locator('#composer-input').press('Enter');
    await messageText(alice.page, 'typed while offline', { own: true }).waitFor();
    await messageText(bob.page, 'typed while offline').waitFor();
    await say(bob.page, 'after the restart');
    await messageText(alice.page, 'after the restart').waitFor();

    // Each connection used its own ticket: four sockets, four tickets.
    const tickets = [...alice.watch.sockets, ...bob.watch.sockets].map((u) => new URL(u).searchParams.get('ticket'));
    assert.ok(tickets.length >= 4, `expected reconnections, saw ${tickets.length} sockets`);
    assert.equal(new Set(tickets).size, tickets.length, 'a ticket was reused');
    // The refused connection attempts while the server was down are expected
    // console noise; anything thrown by the page's own code is not.
    const thrown = [...alice.watch.errors, ...bob.watch.errors].filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket|Failed to load resource/.test(e));
    assert.deepEqual(thrown, []);
  } finally {
    await Promise.all([alice.context.close(), bob.context.close()]);
  }
});
