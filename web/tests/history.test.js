// Durable history in the browser: scrollback on join, paging back, the
// "N new messages" line, lossless resume after a dropped connection (each
// message once, in order, an unconfirmed one resent without doubling), and
// the notice for messages retention removed. Messages "from elsewhere" are
// sent with the terminal client, chat-cli.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  CLI_SKIP,
  cliSend,
  exactly,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  say,
  screenshot,
  signIn,
  WAIT,
  waitForState,
} from './helpers.js';

const skip = CLI_SKIP;

let browser;

before(async () => {
  if (skip) return;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** The open room's confirmed messages, top to bottom: `{seq, text}`. */
function shownMessages(page) {
  return page
    .locator('#message-area .msg:not(.pending)')
    .evaluateAll((items) => items.map((li) => ({ seq: Number(li.dataset.seq), text: li.querySelector('.text').textContent })));
}

/** Waits until the open room shows exactly `texts` (confirmed, in order). */
async function waitForMessages(page, texts) {
  try {
    await page.waitForFunction(
      (expected) => {
        const shown = [...document.querySelectorAll('#message-area .msg:not(.pending) .text')].map((p) => p.textContent);
        return JSON.stringify(shown) === JSON.stringify(expected);
      },
      texts,
      { timeout: WAIT },
    );
  } catch (e) {
    const shown = (await shownMessages(page)).map((m) => m.text);
    throw new Error(`expected messages ${JSON.stringify(texts)}, the page shows ${JSON.stringify(shown)} (${e.message.split('\n')[0]})`);
  }
}

/** Seqs must be strictly increasing by one: each message once, none missing. */
function assertConsecutive(messages, firstSeq) {
  assert.deepEqual(
    messages.map((m) => m.seq),
    messages.map((_, i) => firstSeq + i),
    `not each message once in order: ${JSON.stringify(messages)}`,
  );
}

/**
 * Puts the page's sockets through the test: every frame is forwarded, and
 * recorded; `cutOnServerFrame` (a predicate) drops the connection, both
 * ways, instead of forwarding the first server frame that matches it.
 */
async function interceptSockets(page) {
  const ctl = { sockets: [], sent: [], received: [], cutOnServerFrame: null };
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    const server = ws.connectToServer();
    const socket = { ws, server, index: ctl.sockets.length };
    ctl.sockets.push(socket);
    ws.onMessage((m) => {
      ctl.sent.push({ socket: socket.index, event: JSON.parse(String(m)) });
      server.send(m);
    });
    server.onMessage((m) => {
      const event = JSON.parse(String(m));
      if (ctl.cutOnServerFrame?.(event)) {
        ctl.cutOnServerFrame = null;
        ws.close({ code: 4000, reason: 'dropped by the test' });
        server.close();
        return;
      }
      ctl.received.push({ socket: socket.index, event });
      ws.send(m);
    });
  });
  return ctl;
}

function dropSocket(ctl) {
  const { ws, server } = ctl.sockets.at(-1);
  ws.close({ code: 4000, reason: 'dropped by the test' });
  server.close();
}

/** Makes every ticket request fail, so the page cannot reconnect until
 * `release()`. */
async function holdReconnects(page) {
  const abort = (route) => route.abort();
  await page.route('**/api/ticket', abort);
  return async () => {
    await page.unroute('**/api/ticket', abort);
    // Skip what is left of the backoff wait, if the page is waiting.
    await page.locator('#retry-now').click({ timeout: 1000 }).catch(() => {});
    await waitForState(page, 'connected');
  };
}

/** Console noise of failed reconnect attempts is expected; nothing else. */
function pageErrors(watch) {
  return watch.errors.filter((e) => !/ERR_CONNECTION_REFUSED|ERR_FAILED|WebSocket|Failed to load resource/.test(e));
}

test('messages sent before a page joins are shown as scrollback; quiet rooms are listed', { skip }, async () => {
  const server = await ChatServer.start();
  const web = await openPage(browser, server);
  try {
    await server.register('reader', 'termy');
    await cliSend(server, 'termy', 'archive', ['first words', 'second <b>words</b>', 'third words']);
    await signIn(web.page, 'reader');

    // The room has no members but has history: it is listed, with 0 members
    // and the time of its last message.
    const listed = web.page.locator('#room-list [data-room="archive"]');
    await listed.locator('.room-count', { hasText: exactly('0') }).waitFor();
    assert.match(await listed.locator('time.room-activity').getAttribute('datetime'), /Z$/);
    assert.match(await listed.getAttribute('aria-label'), /0 members, not joined, last message/);

    await listed.click();
    await web.page.locator('#room-title', { hasText: '# archive' }).waitFor();
    await waitForMessages(web.page, ['first words', 'second <b>words</b>', 'third words']);
    assertConsecutive(await shownMessages(web.page), 1);
    const first = messageText(web.page, 'first words').locator('xpath=ancestor::li[1]');
    assert.equal(await first.locator('.from').textContent(), 'termy');
    assert.match(await first.locator('time').getAttribute('datetime'), /^\d{4}-\d\d-\d\dT.*Z$/);
    // A day line opens the scrollback; none of it counts as unread.
    assert.equal(await web.page.locator('#message-area .messages > li:not([hidden])').first().getAttribute('class'), 'day');
    assert.equal(await web.page.locator('#message-area .unread-marker').count(), 0);
    assert.equal(await web.page.locator('#room-list .unread').count(), 0);
    assert.equal(await web.page.locator('#message-area b').count(), 0, 'received text became markup');
    // The whole room is shown: nothing older to load.
    assert.equal(await web.page.getByRole('button', { name: 'Load older messages' }).isVisible(), false);

    // Live messages continue after the scrollback.
    await say(web.page, 'live now');
    await waitForMessages(web.page, ['first words', 'second <b>words</b>', 'third words', 'live now']);
    assertConsecutive(await shownMessages(web.page), 1);
    await screenshot(web.page, 'scrollback.png');
    assert.deepEqual(pageErrors(web.watch), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('older messages load with the button and by scrolling to the top, keeping the view in place', { skip }, async () => {
  // A short join history, and a rate limit chat-cli's 80 quick messages pass.
  const server = await ChatServer.start({ args: ['--history-on-join', '5', '--rate', '1000', '--burst', '1000'] });
  const web = await openPage(browser, server);
  try {
    await server.register('reader', 'termy');
    const all = Array.from({ length: 80 }, (_, i) => `old message ${i + 1}`);
    await cliSend(server, 'termy', 'deep', all);
    await signIn(web.page, 'reader');
    await joinRoom(web.page, 'deep');
    await waitForMessages(web.page, all.slice(75));

    const older = web.page.getByRole('button', { name: 'Load older messages' });
    const log = web.page.locator('#message-area .messages');
    /** Where a message's text is, from the top of the visible part of the log. */
    const position = (text) =>
      log.evaluate((node, wanted) => {
        const p = [...node.querySelectorAll('.msg .text')].find((t) => t.textContent === wanted);
        return p.getBoundingClientRect().top - node.getBoundingClientRect().top;
      }, text);
    // Five messages do not fill the view, so there is no scrolling yet: the
    // button asks for the page of 50 before them.
    await older.click();
    // The pointer off the log: hovering a grouped message shows its time,
    // which would move what is measured below.
    await web.page.mouse.move(0, 0);
    await waitForMessages(web.page, all.slice(25));
    const height = await log.evaluate((node) => node.clientHeight);
    const seen = await position('old message 76');
    assert.ok(seen >= 0 && seen < height, `the message read last went out of view (${seen} of ${height})`);
    assert.equal(await older.isVisible(), true, 'more to load');

    // Scrolling to the top loads the rest above, and what was at the top
    // stays exactly where it was.
    const topBefore = await log.evaluate((node) => {
      node.scrollTop = 0;
      const p = [...node.querySelectorAll('.msg .text')].find((t) => t.textContent === 'old message 26');
      return p.getBoundingClientRect().top - node.getBoundingClientRect().top;
    });
    await waitForMessages(web.page, all);
    const topAfter = await position('old message 26');
    assert.ok(Math.abs(topAfter - topBefore) <= 2, `the view jumped: old message 26 moved from ${topBefore} to ${topAfter}`);
    await older.waitFor({ state: 'hidden' });
    assertConsecutive(await shownMessages(web.page), 1);
    // One day line per day shown.
    const days = await web.page.locator('#message-area .messages > li.day').count();
    const distinctDays = await log.evaluate(
      (node) => new Set([...node.querySelectorAll('.msg time[datetime]')].map((t) => new Date(t.dateTime).toDateString())).size,
    );
    assert.equal(days, distinctDays);
    assert.deepEqual(pageErrors(web.watch), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('opening a room with unread messages shows a "N new messages" line where they begin', { skip }, async () => {
  const server = await ChatServer.start();
  const web = await openPage(browser, server);
  try {
    await server.register('reader', 'termy');
    await signIn(web.page, 'reader');
    await joinRoom(web.page, 'news');
    await say(web.page, 'read already');
    await joinRoom(web.page, 'elsewhere');
    assert.equal(await web.page.locator('#message-area .unread-marker').count(), 0);

    await cliSend(server, 'termy', 'news', ['unread one', 'unread two', 'unread three']);
    const news = web.page.locator('#room-list [data-room="news"]');
    await news.locator('.unread', { hasText: exactly('3') }).waitFor();
    await news.click();
    await web.page.locator('#room-title', { hasText: '# news' }).waitFor();
    const marker = web.page.locator('#message-area .unread-marker');
    assert.equal(await marker.textContent(), '3 new messages');
    // Right above the first unread message, below what was read.
    assert.equal(await marker.evaluate((m) => m.nextElementSibling.querySelector('.text')?.textContent), 'unread one');
    assert.equal(
      await marker.evaluate((m) => {
        let item = m.previousElementSibling;
        while (item && !item.classList.contains('msg')) item = item.previousElementSibling;
        return item?.querySelector('.text').textContent;
      }),
      'read already',
    );
    await news.locator('.unread').waitFor({ state: 'detached' });
    await marker.scrollIntoViewIfNeeded();
    await screenshot(web.page, 'unread-marker.png');

    // Read now: going away and back again shows no line.
    await web.page.locator('#room-list [data-room="elsewhere"]').click();
    await web.page.locator('#room-title', { hasText: '# elsewhere' }).waitFor();
    await news.click();
    await web.page.locator('#room-title', { hasText: '# news' }).waitFor();
    assert.equal(await marker.count(), 0);
    assert.deepEqual(pageErrors(web.watch), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('after a dropped connection the page resumes: every message once, in order, and an unconfirmed one resent', { skip }, async () => {
  const server = await ChatServer.start();
  const web = await openPage(browser, server);
  try {
    await server.register('reader', 'termy');
    const ctl = await interceptSockets(web.page);
    await signIn(web.page, 'reader');
    await joinRoom(web.page, 'relay');
    await joinRoom(web.page, 'side');
    await say(web.page, 'side zero');
    await web.page.locator('#room-list [data-room="relay"]').click();
    await web.page.locator('#room-title', { hasText: '# relay' }).waitFor();
    await say(web.page, 'one');

    // The server stores "lost ack", but the connection drops before its ack
    // (and its copy) reach the page.
    const release = await holdReconnects(web.page);
    ctl.cutOnServerFrame = (event) => event.type === 'ack';
    await web.page.locator('#composer-input').fill('lost ack');
    await web.page.locator('#composer-input').press('Enter');
    await waitForState(web.page, 'reconnecting');
    const pending = web.page.locator('#message-area .msg.pending');
    await pending.filter({ hasText: 'lost ack' }).filter({ hasText: 'Sending…' }).waitFor();

    // Meanwhile, others write in both rooms.
    await cliSend(server, 'termy', 'relay', ['away 1', 'away 2', 'away 3', 'away 4']);
    await cliSend(server, 'termy', 'side', ['side 1', 'side 2']);

    await release();
    const expected = ['one', 'lost ack', 'away 1', 'away 2', 'away 3', 'away 4'];
    await waitForMessages(web.page, expected);
    await pending.waitFor({ state: 'detached' });
    assertConsecutive(await shownMessages(web.page), 1);
    // Caught up while the page was away: marked as new.
    const marker = web.page.locator('#message-area .unread-marker');
    assert.equal(await marker.textContent(), '4 new messages');
    assert.equal(await marker.evaluate((m) => m.nextElementSibling.querySelector('.text')?.textContent), 'away 1');

    // The page resumed each room after the newest message it had, and sent
    // "lost ack" again with the same client_id; the server stored it once.
    const later = ctl.sent.filter((s) => s.socket > 0).map((s) => s.event);
    const joins = later.filter((e) => e.type === 'join_room').map((e) => e.payload);
    const epoch = ctl.received.find((r) => r.socket === 0 && r.event.type === 'joined').event.payload.epoch;
    assert.equal(typeof epoch, 'string');
    assert.deepEqual(
      joins.sort((a, b) => (a.room < b.room ? -1 : 1)),
      [
        { room: 'relay', since: 1, epoch },
        { room: 'side', since: 1, epoch },
      ],
    );
    const sends = ctl.sent.map((s) => s.event).filter((e) => e.type === 'send_message' && e.payload.text === 'lost ack');
    assert.equal(sends.length, 2, 'sent once, resent once');
    assert.equal(sends[0].payload.client_id, sends[1].payload.client_id);
    assert.ok(sends[0].payload.client_id.length > 0);

    // The other room: its messages count as unread, with the line on opening.
    const side = web.page.locator('#room-list [data-room="side"]');
    await side.locator('.unread', { hasText: exactly('2') }).waitFor();
    await side.click();
    await web.page.locator('#room-title', { hasText: '# side' }).waitFor();
    await waitForMessages(web.page, ['side zero', 'side 1', 'side 2']);
    assertConsecutive(await shownMessages(web.page), 1);
    assert.equal(await marker.textContent(), '2 new messages');

    // And the live stream goes on from there, still without repeats.
    await say(web.page, 'side live');
    await cliSend(server, 'termy', 'side', ['side 3']);
    await waitForMessages(web.page, ['side zero', 'side 1', 'side 2', 'side live', 'side 3']);
    assertConsecutive(await shownMessages(web.page), 1);
    assert.deepEqual(pageErrors(web.watch), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});

test('a resume past what the server still keeps shows which messages are gone', { skip }, async () => {
  const server = await ChatServer.start({ args: ['--retain-messages', '3'] });
  const web = await openPage(browser, server);
  try {
    await server.register('reader', 'termy');
    const ctl = await interceptSockets(web.page);
    await signIn(web.page, 'reader');
    await joinRoom(web.page, 'gappy');
    await say(web.page, 'first');

    const release = await holdReconnects(web.page);
    dropSocket(ctl);
    await waitForState(web.page, 'reconnecting');
    // Six more (seq 2 to 7); the server keeps only 5 to 7.
    await cliSend(server, 'termy', 'gappy', ['later 1', 'later 2', 'later 3', 'later 4', 'later 5', 'later 6']);
    await release();

    await web.page.locator('#message-area .notice.gap', { hasText: exactly('Messages 2–4 are no longer available.') }).waitFor();
    await waitForMessages(web.page, ['first', 'later 4', 'later 5', 'later 6']);
    assert.deepEqual(
      (await shownMessages(web.page)).map((m) => m.seq),
      [1, 5, 6, 7],
    );
    // The notice stands where the missing messages would be.
    const order = await web.page
      .locator('#message-area .messages > li:is(.msg, .gap)')
      .evaluateAll((items) => items.map((li) => (li.classList.contains('gap') ? 'gap' : li.querySelector('.text').textContent)));
    assert.deepEqual(order, ['first', 'gap', 'later 4', 'later 5', 'later 6']);
    await screenshot(web.page, 'history-gap.png');
    assert.deepEqual(pageErrors(web.watch), []);
  } finally {
    await web.context.close();
    await server.dispose();
  }
});
