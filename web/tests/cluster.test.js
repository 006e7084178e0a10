// Cluster mode: the browser client on one node and chat-tui (in a real
// terminal, tmux) on another, sharing one PostgreSQL database and one Redis,
// talk across the nodes. Skipped with a note without PostgreSQL, Redis, tmux
// or chat-tui; in CI (CI=true) those are required.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  joinRoom,
  launchBrowser,
  messageText,
  openPage,
  PASSWORD,
  REPO,
  say,
  screenshot,
  signIn,
  WAIT,
  waitForMember,
} from './helpers.js';

const TUI_BIN = process.env.CHAT_TUI_BIN || path.join(REPO, 'target/debug/chat-tui');
const PG = process.env.CHAT_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432';
const REDIS = process.env.CHAT_TEST_REDIS || 'redis://127.0.0.1:6379';

function works(command, args) {
  return spawnSync(command, args, { stdio: 'ignore', timeout: 5000 }).status === 0;
}

function whyMissing() {
  if (!existsSync(TUI_BIN)) return `chat-tui not found at ${TUI_BIN} (cargo build --bin chat-tui)`;
  if (!works('tmux', ['-V'])) return 'tmux is not installed (apt-get install -y tmux)';
  if (!works('psql', [`${PG}/postgres`, '-Atqc', 'SELECT 1'])) return `PostgreSQL does not answer at ${PG} (start it, or set CHAT_TEST_POSTGRES)`;
  if (!works('redis-cli', ['-u', REDIS, 'ping'])) return `Redis does not answer at ${REDIS} (start it, or set CHAT_TEST_REDIS)`;
  return false;
}

const missing = whyMissing();
if (missing && process.env.CI === 'true') throw new Error(`required in CI: ${missing}`);
const skip = missing ? `SKIPPED: ${missing}` : false;

const suffix = Math.random().toString(36).slice(2, 12);
const database = `chat_web_${suffix}`;
const socket = `chat-web-cluster-${process.pid}`;
let nodes = [];
let browser;

function tmux(...args) {
  return execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
}

/** Polls the terminal until it shows `text`. */
async function screenShows(text) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const screen = tmux('capture-pane', '-p');
    if (screen.includes(text)) return screen;
    if (Date.now() > deadline) throw new Error(`the terminal never showed ${JSON.stringify(text)}:\n${screen}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  if (skip) return;
  execFileSync('psql', [`${PG}/postgres`, '-qc', `CREATE DATABASE ${database}`]);
  const engines = [
    '--database-url', `${PG}/${database}`,
    '--redis-url', REDIS,
    '--redis-prefix', `chat_web_${suffix}`,
  ];
  for (const id of ['n1', 'n2']) {
    nodes.push(await ChatServer.start({ args: [...engines, '--node-id', id] }));
  }
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const node of nodes) await node.dispose();
  if (!skip) {
    spawnSync('tmux', ['-L', socket, 'kill-server']);
    spawnSync('dropdb', ['--if-exists', '--force', '-h', '127.0.0.1', '-U', 'postgres', database]);
    // Leave the shared Redis as it was found.
    const keys = spawnSync('redis-cli', ['-u', REDIS, '--scan', '--pattern', `chat_web_${suffix}*`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    if (keys.length) spawnSync('redis-cli', ['-u', REDIS, 'del', ...keys]);
  }
});

test('the browser on one node and chat-tui on another talk across the cluster', { skip }, async () => {
  const [a, b] = nodes;
  // Registered through node A, signed in on both.
  await a.register('webby', 'termy');
  const web = await openPage(browser, a);
  await signIn(web.page, 'webby');
  await joinRoom(web.page, 'bridge');

  tmux('new-session', '-d', '-x', '120', '-y', '32', '-e', `CHAT_PASSWORD=${PASSWORD}`, 'bash --norc --noprofile');
  tmux('send-keys', '-l', `${TUI_BIN} --server ${b.url} --user termy --room bridge`);
  tmux('send-keys', 'Enter');
  await screenShows('connected to');
  await screenShows('Message bridge');

  // Presence crosses nodes: each sees the other in the room.
  await waitForMember(web.page, 'termy');

  // Browser (node A) -> chat-tui (node B).
  await say(web.page, 'hello from the browser on n1');
  await screenShows('hello from the browser on n1');

  // chat-tui (node B) -> browser (node A).
  tmux('send-keys', '-l', 'hello from the terminal on n2');
  tmux('send-keys', 'Enter');
  await messageText(web.page, 'hello from the terminal on n2').waitFor();
  await screenShows('hello from the terminal on n2');
  await screenshot(web.page, 'cluster-browser-n1.png');
  assert.deepEqual(web.watch.errors, [], 'no errors in the page');
});
