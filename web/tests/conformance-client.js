#!/usr/bin/env node
// Drives the real browser client, in headless Chromium, for a conformance
// test written in another language: the test spawns this program, and talks
// to it in JSON lines.
//
// Environment:
//   CONF_URL       base http(s) URL the page is served from (required)
//   CONF_USER      user name to sign in with, through the form (required)
//   CONF_PASSWORD  its password (required; never printed)
//   CONF_ROOM      room to join, through the room field (required)
//   CHROMIUM       the browser (default /usr/bin/chromium)
//   CONF_TIMEOUT_MS  how long any one step may take (default 15000)
//
// Once signed in and in the room (its `joined` handled), prints
// {"ready":true}. Then reads one command per line on stdin:
//   {"send":"TEXT"}  types TEXT in the composer and presses Enter
//   {"held":true}    prints {"held":[{"seq":1,"from":"bob","text":"..."}, ...]}:
//                    the messages the page's model holds for the room, in its
//                    order (window.chatDebug.held; unacked ones are not held)
//   {"quit":true}    closes the browser and exits 0
// It exits 0 when stdin closes too, and non-zero, saying why on stderr, on
// any failure: 1 for the page or the browser, 2 for a bad command line.
// stdout carries only the JSON lines above; everything else goes to stderr.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { chromium } from 'playwright-core';


const env = {
  url: process.env.CONF_URL,
  user: process.env.CONF_USER,
  password: process.env.CONF_PASSWORD,
  room: process.env.CONF_ROOM,
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  timeout: Number(process.env.CONF_TIMEOUT_MS || 15000),
};

/** A failure with the exit code it means. */
class Failure extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

let profile = null;
let context = null;
let closing = null;

/** Closes the browser and removes its profile; safe to call twice. */
function cleanUp() {
  closing ??= (async () => {
    try {
      await context?.close();
    } catch (e) {
      note(`closing the browser: ${e.message}`);
    }
    if (profile) rmSync(profile, { recursive: true, force: true });
  })();
  return closing;
}

async function exit(code, message = null) {
  if (message) process.stderr.write(`conformance-client: ${message}\n`);
  await cleanUp();
  process.exit(code);
}

function note(text) {
  process.stderr.write(`conformance-client: ${text}\n`);
}

function print(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

process.on('SIGTERM', () => exit(143, 'terminated'));
process.on('SIGINT', () => exit(130, 'interrupted'));

function checkEnv() {
  for (const [name, value] of [
    ['CONF_URL', env.url],
    ['CONF_USER', env.user],
    ['CONF_PASSWORD', env.password],
    ['CONF_ROOM', env.room],
  ]) {
    if (!value) throw new Failure(`${name} is not set`, 2);
  }
  try {
    if (!/^https?:$/.test(new URL(env.url).protocol)) throw new Error();
  } catch {
    throw new Failure(`CONF_URL is not an http(s) URL: ${env.url}`, 2);
  }
  if (!Number.isFinite(env.timeout) || env.timeout <= 0) throw new Failure('CONF_TIMEOUT_MS is not a positive number', 2);
}

/** Launches Chromium on a fresh profile and opens the page. */
async function openPage() {
  profile = mkdtempSync(path.join(tmpdir(), 'chat-conformance-'));
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ];
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: env.chromium,
      headless: true,
      args,
      ignoreHTTPSErrors: true,
    });
  } catch (e) {
    throw new Failure(`cannot launch Chromium at ${env.chromium}: ${e.message.split('\n')[0]}`);
  }
  context.setDefaultTimeout(env.timeout);
  const page = context.pages()[0] ?? (await context.newPage());
  // An exception the page did not catch is a bug of the client: stop there.
  page.on('pageerror', (e) => exit(1, `the page threw: ${e.message}`));
  page.on('crash', () => exit(1, 'the page crashed'));
  context.on('close', () => {
    if (!closing) exit(1, 'the browser closed');
  });
  page.on('console', (m) => {
    // A refused socket's URL holds its one-time ticket: no use to anyone
    // reading this, and a credential for the few seconds it lives.
    if (m.type() === 'error' || m.type() === 'warning') note(`page ${m.type()}: ${m.text().replace(/ticket=[^&\s'"]+/g, 'ticket=…')}`);
  });
  let response;
  try {
    response = await page.goto(env.url);
  } catch (e) {
    throw new Failure(`cannot open ${env.url}: ${e.message.split('\n')[0]}`);
  }
  if (!response?.ok()) throw new Failure(`GET ${env.url}: ${response?.status() ?? 'no answer'}`);
  return page;
}

/** Waits for the first of several outcomes; returns the name of the one seen. */
async function first(page, outcomes, what) {
  const names = Object.keys(outcomes);
  const any = outcomes[names[0]];
  const locator = names.slice(1).reduce((all, name) => all.or(outcomes[name]), any);
  try {
    await locator.first().waitFor();
  } catch {
    throw new Failure(`timed out after ${env.timeout} ms waiting for ${what}`);
  }
  for (const name of names) if (await outcomes[name].first().isVisible()) return name;
  return names[0];
}

async function signIn(page) {
  await page.getByLabel('User name').fill(env.user);
  await page.getByLabel('Password').fill(env.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const seen = await first(
    page,
    {
      connected: page.locator('#banner[data-state="connected"]'),
      refused: page.locator('#login-error:not(:empty)'),
    },
    'the sign-in to connect',
  );
  if (seen === 'refused') throw new Failure(`sign-in refused: ${await page.locator('#login-error').textContent()}`);
}

async function join(page) {
  await page.getByLabel('Join or create a room').fill(env.room);
  await page.getByLabel('Join or create a room').press('Enter');
  // The room opens, and the composer comes alive, only once `joined` is handled.
  const seen = await page
    .waitForFunction(
      (room) => {
        if (document.getElementById('join-error').textContent !== '') return 'refused';
        const open = document.getElementById('room-title').textContent === `# ${room}`;
        return open && !document.getElementById('composer-input').disabled ? 'joined' : false;
      },
      env.room,
      { timeout: env.timeout },
    )
    .then((handle) => handle.jsonValue())
    .catch(() => {
      throw new Failure(`timed out after ${env.timeout} ms waiting for the room ${env.room} to be joined`);
    });
  if (seen === 'refused') throw new Failure(`join refused: ${await page.locator('#join-error').textContent()}`);
}

/** Fails if the page is back at the sign-in form (its session ended). */
async function stillSignedIn(page) {
  if (await page.locator('#login-view').isVisible()) {
    const why = (await page.locator('#login-error').textContent()) || 'no reason given';
    throw new Failure(`the page went back to the sign-in form: ${why}`);
  }
}

/** Types `text` and presses Enter; done once the page took the message (the
 * box empties). A page that is offline keeps it in the box: Enter goes
 * again once the connection is back, as a person would press it. */
async function send(page, text) {
  await stillSignedIn(page);
  const box = page.locator('#composer-input');
  await box.fill(text);
  await box.press('Enter');
  const deadline = Date.now() + env.timeout;
  for (;;) {
    if (Date.now() > deadline) throw new Failure(`timed out after ${env.timeout} ms waiting for the page to take a message`);
    const now = await page.evaluate(() => ({
      taken: document.getElementById('composer-input').value === '',
      connected: document.getElementById('banner').dataset.state === 'connected',
      error: document.getElementById('chat-error').textContent,
    }));
    if (now.taken) return;
    if (now.connected) {
      if (now.error && !now.error.startsWith('Not connected')) throw new Failure(`the page did not send a message: ${now.error}`);
      await box.press('Enter');
      continue;
    }
    await stillSignedIn(page);
    // Offline: wait for the connection to come back.
    const left = Math.max(1, deadline - Date.now());
    await page.locator('#banner[data-state="connected"]').waitFor({ timeout: left }).catch(() => {});
  }
}

async function held(page) {
  await stillSignedIn(page);
  return page.evaluate((room) => window.chatDebug.held(room), env.room);
}

/** One command line; returns false for `quit`. */
async function command(page, line) {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    throw new Failure(`not a JSON line: ${line.slice(0, 200)}`, 2);
  }
  if (typeof cmd !== 'object' || cmd === null || Array.isArray(cmd)) throw new Failure(`not a command: ${line.slice(0, 200)}`, 2);
  if (typeof cmd.send === 'string') {
    await send(page, cmd.send);
  } else if (cmd.held === true) {
    print({ held: await held(page) });
  } else if (cmd.quit === true) {
    return false;
  } else {
    throw new Failure(`unknown command: ${line.slice(0, 200)}`, 2);
  }
  return true;
}

async function main() {
  checkEnv();
  const page = await openPage();
  await signIn(page);
  await join(page);
  print({ ready: true });
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    if (!(await command(page, line))) break;
  }
  await exit(0);
}

main().catch((e) => exit(e instanceof Failure ? e.code : 1, e instanceof Failure ? e.message : e.stack ?? String(e)));
