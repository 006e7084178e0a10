// The browser client against a real chat-server: chatting, room isolation,
// unread counts, keyboard use, the CSP, XSS, and screenshots.

import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  exactly,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  PASSWORD,
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

test('the page is served with a CSP that blocks inline script', async () => {
  const { context, page, watch } = await openPage(browser, server);
  try {
    const headers = watch.response.headers();
    assert.match(headers['content-type'], /^text\/html/);
    const csp = headers['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(headers['x-content-type-options'], 'nosniff');

    // Chromium really enforces it: a script element with inline text never runs.
    const ran = await page.evaluate(() => {
      const s = document.createElement('script');
      s.textContent = 'window.__inlineRan = true';
      document.head.append(s);
      return window.__inlineRan === true;
    });
    assert.equal(ran, false, 'inline script ran despite the CSP');
    // The page's own module scripts did run: the login form is live.
    await page.locator('#username:focus').waitFor();
    await screenshot(page, 'login.png');
  } finally {
    await context.close();
  }
});

test('two people chat in one room while a third, in another room, receives nothing', async () => {
  await server.register('alice', 'bob');
  const alice = await openPage(browser, server);
  const bob = await openPage(browser, server);
  const carol = await openPage(browser, server);
  try {
    await signIn(alice.page, 'alice');
    await signIn(bob.page, 'bob');
    await joinRoom(alice.page, 'general');
    await joinRoom(bob.page, 'general');
    await waitForMember(alice.page, 'bob');

    // Carol uses the keyboard alone: she signs up, joins a room and talks.
    const keys = carol.page.keyboard;
    await carol.page.locator('#username:focus').waitFor();
    await keys.type('carol');
    await keys.press('Tab');
    await keys.type(PASSWORD);
    await keys.press('Tab'); // "Sign in"
    await keys.press('Tab'); // "Create account"
    await keys.press('Enter');
    await waitForState(carol.page, 'connected');
    await carol.page.locator('#room-input:focus').waitFor();
    await keys.type('random');
    await keys.press('Enter');
    await carol.page.locator('#room-title', { hasText: '# random' }).waitFor();
    await carol.page.locator('#composer-input:focus').waitFor();
    await keys.type('anyone here?');
    await keys.press('Shift+Enter');
    await keys.type('second line');
    await keys.press('Enter');
    await messageText(carol.page, 'anyone here?\nsecond line', { own: true }).waitFor();

    await say(alice.page, 'hello bob <b>bold?</b>');
    await messageText(bob.page, 'hello bob <b>bold?</b>').waitFor();
    await say(bob.page, 'hi alice 👋');
    const fromBob = alice.page.locator('#message-area .msg:not(.own)').filter({ hasText: 'hi alice 👋' });
    await fromBob.waitFor();
    assert.equal(await fromBob.locator('.from').textContent(), 'bob');
    // Timestamps come from sent_at, as a machine-readable <time>.
    const sentAt = await fromBob.locator('time').getAttribute('datetime');
    assert.match(sentAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // Own messages are told apart: alice's line is "own" on her page only.
    await messageText(alice.page, 'hello bob <b>bold?</b>', { own: true }).waitFor();
    assert.equal(await bob.page.locator('#message-area .msg.own').count(), 1);

    // The server answers each connection in order: once carol has the echo of
    // a message sent after alice's and bob's were accepted, anything of theirs
    // wrongly sent to her would have arrived before it.
    await say(carol.page, 'still alone');
    const leaked = carol.watch.frames.filter((f) => f.includes('hello bob') || f.includes('hi alice'));
    assert.deepEqual(leaked, [], 'carol received frames of a room she is not in');
    assert.equal(await carol.page.getByText('hello bob').count(), 0);

    // Carol's room list shows every room with its size; hers is marked joined.
    const general = carol.page.locator('#room-list [data-room="general"]');
    await general.locator('.room-count', { hasText: exactly('2') }).waitFor();
    assert.doesNotMatch(await general.getAttribute('class'), /joined/);
    assert.match(await carol.page.locator('#room-list [data-room="random"]').getAttribute('class'), /joined/);

    // Unread counts: alice opens another room, bob writes in general.
    await joinRoom(alice.page, 'side');
    await say(bob.page, 'while you were away');
    const badge = alice.page.locator('#room-list [data-room="general"] .unread');
    await badge.filter({ hasText: exactly('1') }).waitFor();
    await alice.page.locator('#room-list [data-room="general"]').click();
    await messageText(alice.page, 'while you were away').waitFor();
    await badge.waitFor({ state: 'detached' });

    await say(alice.page, 'Lunch at 12:30? 🍜');
    await say(bob.page, 'Sounds good.\nI will book the usual table.');
    const png = await screenshot(alice.page, 'chat-desktop.png');
    assert.ok(statSync(png).size > 10_000, 'screenshot written');

    // Phone width: one column, nothing wider than the screen, drawers work.
    await bob.page.setViewportSize({ width: 375, height: 740 });
    assert.equal(
      await bob.page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      true,
      'page wider than a phone screen',
    );
    assert.equal(await bob.page.locator('#room-list').isVisible(), false, 'room list stays folded on a phone');
    await screenshot(bob.page, 'chat-phone.png');
    await bob.page.getByRole('button', { name: /Rooms/ }).click();
    await bob.page.locator('#room-list').waitFor({ state: 'visible' });
    await screenshot(bob.page, 'chat-phone-rooms.png');
    await bob.page.keyboard.press('Escape');
    await bob.page.locator('#room-list').waitFor({ state: 'hidden' });

    for (const who of [alice, bob, carol]) assert.deepEqual(who.watch.errors, []);
  } finally {
    await Promise.all([alice.context.close(), bob.context.close(), carol.context.close()]);
  }
});

test('received markup is shown as text and never runs', async () => {
  await server.register('mallory', 'victim');
  const mallory = await openPage(browser, server);
  const victim = await openPage(browser, server);
  try {
    await signIn(mallory.page, 'mallory');
    await signIn(victim.page, 'victim');
    await joinRoom(victim.page, 'xss');
    await joinRoom(mallory.page, 'xss');
    const payloads = [
      '<img src=x onerror=alert(1)>',
      '<script>alert(2)</script>',
      '"><svg onload="window.__pwned=1">',
      '<a href="javascript:alert(3)">click</a>',
    ];
    for (const text of payloads) {
      await say(mallory.page, text);
      const shown = messageText(victim.page, text);
      await shown.waitFor();
      assert.equal(await shown.textContent(), text);
    }
    for (const page of [victim.page, mallory.page]) {
      const injected = await page.locator('#message-area :is(img, script, svg, a, b)').count();
      assert.equal(injected, 0, 'received text became elements');
      assert.equal(await page.evaluate(() => window.__pwned), undefined);
    }
    assert.deepEqual(victim.watch.dialogs, [], 'a dialog opened');
    // A blocked inline handler would show here as a CSP violation.
    assert.deepEqual(victim.watch.errors, []);
  } finally {
    await Promise.all([mallory.context.close(), victim.context.close()]);
  }
});

test('messages refused by the rate limit are marked failed: exactly those whose ref the errors name', async () => {
  // No refill and a small burst: of a quick run of messages, the last few are
  // refused, for sure, while the first ones are still being answered.
  const strict = await ChatServer.start({ args: ['--rate', '0', '--burst', '5'] });
  const { context, page, watch } = await openPage(browser, strict);
  const sent = [];
  const answers = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => sent.push(JSON.parse(String(payload))));
    ws.on('framereceived', ({ payload }) => answers.push(JSON.parse(String(payload))));
  });
  try {
    await strict.register('hasty');
    await signIn(page, 'hasty');
    await joinRoom(page, 'fast');
    const box = page.locator('#composer-input');
    const texts = Array.from({ length: 6 }, (_, i) => `message ${i + 1}`);
    for (const text of texts) {
      await box.fill(text);
      await box.press('Enter');
    }
    // Each ends up either shown as sent, or marked as not sent.
    const failed = page.locator('#message-area .msg.pending.failed');
    for (const text of texts) {
      await messageText(page, text, { own: true }).or(failed.filter({ has: page.locator('.text', { hasText: exactly(text) }) })).waitFor();
    }
    const refusedTexts = await failed.locator('.text').allTextContents();
    assert.ok(refusedTexts.length > 0, 'the server never refused a message');
    assert.ok(refusedTexts.length < texts.length, 'the server refused every message');
    await page.locator('#chat-error', { hasText: 'Not sent: You are sending too fast' }).waitFor();
    assert.match(await failed.first().locator('.status').textContent(), /Not sent: You are sending too fast/);
    assert.equal(await box.inputValue(), '', 'the text stays in its bubble, not in the box');
    for (const text of refusedTexts) assert.equal(await messageText(page, text).count(), 0);

    // Every request went with its own ref, and each error names the very
    // message that the page marked failed.
    const requests = new Map(sent.map((frame) => [frame.ref, frame]));
    assert.equal(requests.size, sent.length, 'a ref was missing or used twice');
    const refused = answers.filter((e) => e.type === 'error' && requests.get(e.ref)?.type === 'send_message');
    const refusedIds = refused.map((e) => requests.get(e.ref).payload.client_id).sort();
    const markedIds = (await failed.evaluateAll((items) => items.map((li) => li.dataset.clientId))).sort();
    assert.deepEqual(markedIds, refusedIds);
    assert.deepEqual(refused.map((e) => requests.get(e.ref).payload.text).sort(), [...refusedTexts].sort());

    // Discarded, a failed message is gone for good.
    await failed.first().getByRole('button', { name: 'Discard' }).click();
    await page.waitForFunction((n) => document.querySelectorAll('#message-area .msg.failed').length === n, refusedTexts.length - 1);
    assert.deepEqual(watch.errors, []);
  } finally {
    await context.close();
    await strict.dispose();
  }
});
