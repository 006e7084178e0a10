// Sessions (docs/protocol.md, section 2): the page logs in with the password
// once, keeps the session token in sessionStorage, and gets every later
// ticket from it: a reload goes straight back in and resumes its rooms. A
// session the server ended sends the page to the sign-in form, saying why.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  PASSWORD,
  say,
  sessionToken,
  signIn,
  WAIT,
  waitForState,
  withTimeout,
} from './helpers.js';

const LOGINS_OK = 'chat_logins_total{outcome="ok"}';
const SESSION_TICKETS = 'chat_session_tickets_total';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** A counter's value (0 before it was first counted). */
async function counter(server, name) {
  return (await server.metrics()).get(name) ?? 0;
}

/** Resolves once `check()` resolves true, asking again every 100 ms. */
async function eventually(check, what) {
  await withTimeout(
    (async () => {
      while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 100));
    })(),
    WAIT,
    what,
  );
}

/** The sign-in form is shown, with `reason` in it. */
async function atSignInForm(page, reason) {
  await page.locator('#login-view:not([hidden])').waitFor();
  await page.locator('#login-error', { hasText: reason }).waitFor();
  assert.equal(await page.locator('#chat-view').isHidden(), true);
  assert.equal(await sessionToken(page), null, 'the ended session is still in sessionStorage');
}

/** Everything the page keeps in the tab's storage, as text. */
function storedText(page) {
  return page.evaluate(() => JSON.stringify([{ ...sessionStorage }, { ...localStorage }, document.cookie]));
}

test('a reload goes straight back in on the session: one more ticket, no password login, the rooms resumed', async () => {
  const server = await ChatServer.start({ args: ['--metrics-listen', '127.0.0.1:0'] });
  const web = await openPage(browser, server);
  const sent = [];
  web.page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => sent.push(JSON.parse(String(payload)))));
  try {
    await server.register('alice');
    await signIn(web.page, 'alice');
    await joinRoom(web.page, 'lobby');
    await joinRoom(web.page, 'side');
    await web.page.locator('#room-list [data-room="lobby"]').click();
    await web.page.locator('#room-title', { hasText: '# lobby' }).waitFor();
    await say(web.page, 'before the reload');

    // The password is nowhere in the tab; the session only in sessionStorage.
    const stored = await storedText(web.page);
    assert.ok(!stored.includes(PASSWORD), 'the password was stored');
    const token = await sessionToken(web.page);
    assert.match(token, /^\S{16,}$/);
    assert.equal(await web.page.evaluate(() => localStorage.length), 0);
    assert.ok(!(await web.page.evaluate(() => document.cookie)).includes(token));

    const logins = await counter(server, LOGINS_OK);
    const tickets = await counter(server, SESSION_TICKETS);
    assert.equal(logins, 1);
    sent.length = 0;

    await web.page.reload();
    await waitForState(web.page, 'connected');
    assert.equal(await web.page.locator('#login-view').isHidden(), true, 'the reload asked for the password');
    // Back in the room it had open, with what was said before (scrollback),
    // and still in the other one.
    await web.page.locator('#room-title', { hasText: '# lobby' }).waitFor();
    await messageText(web.page, 'before the reload', { own: true }).waitFor();
    assert.match(await web.page.locator('#room-list [data-room="side"]').getAttribute('class'), /joined/);
    await say(web.page, 'after the reload');

    assert.equal(await counter(server, LOGINS_OK), logins, 'the reload logged in with the password');
    assert.equal(await counter(server, SESSION_TICKETS), tickets + 1, 'the reload did not get its ticket from the session');
    assert.equal(await sessionToken(web.page), token, 'the same session goes on');
    // Each room resumed after its newest message, in the same history.
    const joins = sent.filter((f) => f.type === 'join_room').map((f) => f.payload);
    const lobby = joins.find((p) => p.room === 'lobby');
    assert.equal(lobby.since, 1);
    assert.equal(typeof lobby.epoch, 'string');
    assert.ok(joins.some((p) => p.room === 'side'));
    const page = (await web.page.locator('#message-area .msg:not(.pending)').evaluateAll((items) => items.map((li) => Number(li.dataset.seq))));
    assert.deepEqual(page, [1, 2], 'each message once, in order');
    assert.deepEqual(web.watch.errors, []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('a session logged out behind the page’s back sends it to the sign-in form, saying why', async () => {
  const server = await ChatServer.start();
  const web = await openPage(browser, server);
  try {
    await server.register('alice');
    await signIn(web.page, 'alice');
    await joinRoom(web.page, 'lobby');
    const token = await sessionToken(web.page);
    assert.equal((await server.postWithSession('/api/logout', token)).status, 204);

    // The open socket stays (logging out closes none); the next ticket is refused.
    await web.page.reload();
    await atSignInForm(web.page, 'Your session has ended');
    assert.equal(await web.page.getByLabel('User name').inputValue(), 'alice');
    // Signing in again works as ever.
    await signIn(web.page, 'alice');
    assert.notEqual(await sessionToken(web.page), token);
    assert.deepEqual(web.watch.errors.filter((e) => !/Failed to load resource/.test(e)), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('an expired session sends a reconnecting page to the sign-in form', async () => {
  const server = await ChatServer.start({ args: ['--session-ttl', '2s'] });
  const web = await openPage(browser, server);
  try {
    await server.register('alice');
    await signIn(web.page, 'alice');
    await joinRoom(web.page, 'lobby');
    const token = await sessionToken(web.page);
    await eventually(async () => (await server.postWithSession('/api/ticket', token)).status === 401, 'the session to expire');

    // The connection drops; the reconnect's ticket is refused: no retrying,
    // no password login behind the user's back, the form instead.
    await server.restart();
    await atSignInForm(web.page, 'Your session has ended');
    assert.equal(await web.page.locator('#banner').getAttribute('data-state'), 'offline');
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('signing out ends the session on the server and forgets it in the tab', async () => {
  const server = await ChatServer.start();
  const web = await openPage(browser, server);
  try {
    await server.register('alice');
    await signIn(web.page, 'alice');
    await joinRoom(web.page, 'lobby');
    const token = await sessionToken(web.page);
    await web.page.getByRole('button', { name: 'Sign out' }).click();
    await web.page.locator('#login-view:not([hidden])').waitFor();
    assert.equal(await web.page.locator('#login-error').textContent(), '');
    assert.equal(await web.page.evaluate(() => sessionStorage.length), 0);
    await eventually(async () => (await server.postWithSession('/api/ticket', token)).status === 401, 'the logout to reach the server');
    // A reload now asks for the password.
    await web.page.reload();
    await web.page.locator('#login-view:not([hidden])').waitFor();
    assert.equal(await web.page.locator('#chat-view').isHidden(), true);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});
