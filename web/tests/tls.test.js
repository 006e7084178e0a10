// Over https and wss, with the certificate the server generates itself.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ChatServer, joinRoom, launchBrowser, messageText, openPage, say, signIn, waitForMember } from './helpers.js';

let server;
let browser;

before(async () => {
  server = await ChatServer.start({ tls: true });
  // The generated certificate is self-signed: this browser is told to accept it.
  browser = await launchBrowser({ insecure: true });
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

test('two pages chat over wss with the generated certificate', async () => {
  assert.match(server.url, /^https:\/\//);
  // Node checks the certificate for real (it trusts the generated file).
  await server.register('alice');
  const alice = await openPage(browser, server);
  const bob = await openPage(browser, server);
  try {
    assert.equal(new URL(alice.page.url()).protocol, 'https:');
    await signIn(alice.page, 'alice');
    await signIn(bob.page, 'bob', { register: true }); // through the page's own form
    await joinRoom(alice.page, 'secure');
    await joinRoom(bob.page, 'secure');
    await waitForMember(alice.page, 'bob');
    await say(alice.page, 'over TLS');
    await messageText(bob.page, 'over TLS').waitFor();
    await say(bob.page, 'and back');
    await messageText(alice.page, 'and back').waitFor();

    for (const who of [alice, bob]) {
      assert.ok(who.watch.sockets.length > 0, 'no socket opened');
      for (const url of who.watch.sockets) assert.match(url, /^wss:\/\//, 'page used ws: on an https page');
      assert.deepEqual(who.watch.errors, []);
    }
  } finally {
    await Promise.all([alice.context.close(), bob.context.close()]);
  }
});
