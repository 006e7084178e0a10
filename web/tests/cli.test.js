// The browser and the terminal client (`chat-cli`, from tui-client/) talk to
// each other through the same server, both ways.

import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  CLI_SKIP,
  exitOf,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  runCli,
  say,
  signIn,
  WAIT,
  waitForMember,
  withTimeout,
} from './helpers.js';

const skip = CLI_SKIP;

let server;
let browser;

before(async () => {
  if (skip) return;
  server = await ChatServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

/** Runs chat-cli as `user` against this file's server. */
function cli(user, args) {
  return runCli(server, user, args);
}

function parseOrNull(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null; // the test fails on the missing line, naming what was printed
  }
}

test('a browser and chat-cli exchange messages both ways', { skip }, async () => {
  await server.register('webby', 'termy');
  const web = await openPage(browser, server);
  const tail = cli('termy', ['tail', '--room', 'bridge', '--json']);
  const stderr = [];
  tail.stderr.on('data', (c) => stderr.push(String(c)));
  const tailExit = exitOf(tail);
  const lines = [];
  let onLine = () => {};
  createInterface({ input: tail.stdout }).on('line', (line) => {
    lines.push(line);
    onLine();
  });
  /** Resolves with the first JSON line from tail that `match`es. */
  const tailed = (match) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const found = lines.map(parseOrNull).find((m) => m !== null && match(m));
          if (found) resolve(found);
        };
        onLine = check;
        check();
      }),
      WAIT,
      `chat-cli tail to print a matching line (printed: ${JSON.stringify(lines)}, stderr: ${stderr.join('')})`,
    );
  try {
    await signIn(web.page, 'webby');
    await joinRoom(web.page, 'bridge');
    // tail is in the room once the page lists it as a member.
    await waitForMember(web.page, 'termy');

    await say(web.page, 'from the browser ✓');
    const got = await tailed((m) => m.text === 'from the browser ✓');
    assert.equal(got.from, 'webby');
    assert.equal(got.room, 'bridge');
    assert.equal(typeof got.id, 'string');
    assert.match(got.sent_at, /Z$/);

    const send = cli('termy', ['send', '--room', 'bridge', 'from the terminal <i>']);
    const sendErr = [];
    send.stderr.on('data', (c) => sendErr.push(String(c)));
    const code = await withTimeout(exitOf(send), WAIT, 'chat-cli send to exit');
    assert.equal(code, 0, `chat-cli send failed: ${sendErr.join('')}`);
    const shown = web.page.locator('#message-area .msg:not(.own)').filter({ hasText: 'from the terminal <i>' });
    await shown.waitFor();
    assert.equal(await shown.locator('.from').textContent(), 'termy');
    // tail saw its own user's message too: it follows the room, not a person.
    await tailed((m) => m.text === 'from the terminal <i>' && m.from === 'termy');
    assert.deepEqual(web.watch.errors, []);
  } finally {
    tail.kill('SIGTERM');
    await withTimeout(tailExit, WAIT, 'chat-cli tail to exit').catch(() => tail.kill('SIGKILL'));
    await web.context.close();
  }
});
