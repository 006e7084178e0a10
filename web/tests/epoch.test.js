// Epochs (docs/protocol.md, sections 4 and 11): with `--storage memory` a
// restarted server has a new, empty history. The page resumes with the
// epoch it had; the server answers with a plain join in its new epoch; the
// page drops everything it held of the room, says so, and goes on from that
// join, never mixing the two histories.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  say,
  signIn,
  waitForState,
} from './helpers.js';

const RESET = 'The server’s history was reset; earlier messages are gone.';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** Records every frame of every socket of a page, both ways. */
function recordFrames(page) {
  const frames = { sent: [], received: [] };
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => frames.sent.push(JSON.parse(String(payload))));
    ws.on('framereceived', ({ payload }) => frames.received.push(JSON.parse(String(payload))));
  });
  return frames;
}

/** The open room's messages as `{seq, text}`, top to bottom. */
function shown(page) {
  return page
    .locator('#message-area .msg:not(.pending)')
    .evaluateAll((items) => items.map((li) => ({ seq: Number(li.dataset.seq), text: li.querySelector('.text').textContent })));
}

test('after a restart with a new history the page drops the old messages, says so, and shows only the new ones', async () => {
  const server = await ChatServer.start({ args: ['--storage', 'memory'] });
  const alice = await openPage(browser, server);
  const bob = await openPage(browser, server);
  const frames = recordFrames(alice.page);
  try {
    await server.register('alice', 'bob');
    await signIn(alice.page, 'alice');
    await joinRoom(alice.page, 'lobby');
    await say(alice.page, 'old one');
    await say(alice.page, 'old two');
    const before = frames.received.find((e) => e.type === 'joined').payload.epoch;
    assert.equal(typeof before, 'string');

    // Alice cannot come back until bob has written into the new history.
    const hold = (route) => route.abort();
    await alice.page.route('**/api/ticket', hold);
    await server.restart();
    await waitForState(alice.page, 'reconnecting');
    await signIn(bob.page, 'bob');
    await joinRoom(bob.page, 'lobby');
    await say(bob.page, 'fresh start');
    frames.sent.length = 0;
    await alice.page.unroute('**/api/ticket', hold);
    await alice.page.locator('#retry-now').click({ timeout: 1000 }).catch(() => {});
    await waitForState(alice.page, 'connected');

    await alice.page.locator('#message-area .notice', { hasText: RESET }).waitFor();
    await messageText(alice.page, 'fresh start').waitFor();
    assert.deepEqual(await shown(alice.page), [{ seq: 1, text: 'fresh start' }], 'old and new histories mixed');
    // The page asked to resume its history; the server answered in another.
    const resume = frames.sent.find((f) => f.type === 'join_room' && f.payload.room === 'lobby');
    assert.deepEqual(resume.payload, { room: 'lobby', since: 2, epoch: before });
    const joined = frames.received.filter((e) => e.type === 'joined' && e.ref === resume.ref).at(-1);
    assert.notEqual(joined.payload.epoch, before);
    // The notice comes first: what was held before it is gone, not above it.
    const log = await alice.page
      .locator('#message-area .messages > li:is(.msg, .notice)')
      .evaluateAll((items) => items.map((li) => li.querySelector('.text')?.textContent ?? li.textContent));
    assert.equal(log[0], RESET);
    assert.ok(!log.some((line) => line.startsWith('old ')));

    // The conversation goes on in the new history, and the next resume names it.
    await say(alice.page, 'new two');
    await messageText(bob.page, 'new two').waitFor();
    assert.deepEqual(await shown(alice.page), [
      { seq: 1, text: 'fresh start' },
      { seq: 2, text: 'new two' },
    ]);
    const saved = await alice.page.evaluate(() => JSON.parse(sessionStorage.getItem('chat.rooms')));
    assert.deepEqual(saved.rooms, [{ name: 'lobby', lastSeq: 2, epoch: joined.payload.epoch }]);
    const thrown = alice.watch.errors.filter((e) => !/ERR_CONNECTION_REFUSED|ERR_FAILED|WebSocket|Failed to load resource/.test(e));
    assert.deepEqual(thrown, []);
  } finally {
    await Promise.all([alice.context.close(), bob.context.close()]);
    await server.dispose();
  }
});
