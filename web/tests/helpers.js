// Test support: the real chat-server binary on loopback, and Debian's
// Chromium driven by playwright-core, with a few page-level helpers.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';


const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const SERVER_BIN = process.env.CHAT_SERVER_BIN || path.join(REPO, 'target/debug/chat-server');
export const CLI_BIN = process.env.CHAT_CLI_BIN || path.join(REPO, 'target/debug/chat-cli');
/** `false` when chat-cli is built, else why the tests that need it are skipped. */
export const CLI_SKIP = existsSync(CLI_BIN)
  ? false
  : `chat-cli not found at ${CLI_BIN}: build it (cargo build --bin chat-cli) or set CHAT_CLI_BIN`;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Screenshots, for people to look at. */
export const OUTPUT = path.join(here, 'output');
export const PASSWORD = 'correct horse battery';
/** How long any one expected thing may take before a test fails. */
export const WAIT = 15000;

/** A `chat-server` process with its own data directory. */
export class ChatServer {
  /** Starts the binary and waits for its "listening on" line. */
  static async start({ tls = false, args = [] } = {}) {
    const server = new ChatServer(tls, mkdtempSync(path.join(tmpdir(), 'chat-web-')));
    server.extraArgs = args;
    await server.#spawn('127.0.0.1:0');
    return server;
  }

  constructor(tls, dataDir) {
    this.tls = tls;
    this.dataDir = dataDir;
    this.url = null;
    /** The Prometheus endpoint, when started with `--metrics-listen`. */
    this.metricsUrl = null;
    this.child = null;
    this.log = [];
  }

  get port() {
    return new URL(this.url).port;
  }

  async #spawn(listen) {
    if (!existsSync(SERVER_BIN)) {
      throw new Error(`${SERVER_BIN} is missing: run \`cargo build --bin chat-server\` (or set CHAT_SERVER_BIN)`);
    }
    const args = ['--listen', listen, '--data-dir', this.dataDir];
    if (this.tls) args.push('--tls');
    args.push(...(this.extraArgs ?? []));
    const child = spawn(SERVER_BIN, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        RUST_LOG: process.env.RUST_LOG ?? 'warn',
        // Every test registers its users from this one address.
        CHAT_REGISTRATIONS_PER_ADDRESS: '100000',
        CHAT_REGISTRATIONS_PER_HOUR: '100000',
        CHAT_MAX_CONNECTIONS_PER_ADDRESS: '100000',
        CHAT_MAX_CONNECTIONS_PER_USER: '100000',
      },
    });
    this.child = child;
    child.stderr.on('data', (chunk) => this.log.push(chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    this.exited = exited;
    const lines = createInterface({ input: child.stdout });
    this.url = await withTimeout(
      new Promise((resolve, reject) => {
        lines.on('line', (line) => {
          const metrics = /^metrics on (http:\/\/\S+)$/.exec(line);
          if (metrics) this.metricsUrl = metrics[1];
          const m = /^chat-server listening on (https?:\/\/\S+)$/.exec(line);
          if (m) resolve(m[1]);
        });
        exited.then((code) => reject(new Error(`chat-server exited (${code}) before listening:\n${this.log.join('')}`)));
      }),
      WAIT,
      'chat-server to start listening',
    );
  }

  /** Stops the server as an operator would (SIGTERM: graceful, 1001 to clients). */
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    try {
      await withTimeout(this.exited, WAIT, 'chat-server to exit');
    } catch (e) {
      this.child.kill('SIGKILL');
      throw e;
    }
  }

  /** Stops and starts again on the same port with the same data directory. */
  async restart() {
    const port = this.port;
    await this.stop();
    await this.#spawn(`127.0.0.1:${port}`);
  }

  /** Stops the server and removes its data directory. */
  async dispose() {
    try {
      await this.stop();
    } finally {
      rmSync(this.dataDir, { recursive: true, force: true });
    }
  }

  /** The certificate generated with --tls, for Node's own requests. */
  get ca() {
    return this.tls ? readFileSync(path.join(this.dataDir, 'tls', 'cert.pem')) : undefined;
  }

  /** POSTs JSON to the server; resolves with `{status, body, headers}`. */
  post(pathname, json) {
    return request(new URL(pathname, this.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(json),
      ca: this.ca,
    });
  }

  /** POSTs with a session as the bearer credential (`/api/ticket`,
   * `/api/logout`); resolves with `{status, body, headers}`. */
  postWithSession(pathname, session) {
    return request(new URL(pathname, this.url), { method: 'POST', headers: { authorization: `Bearer ${session}` }, ca: this.ca });
  }

  /** GETs a path; resolves with `{status, body, headers}`. */
  get(pathname) {
    return request(new URL(pathname, this.url), { method: 'GET', ca: this.ca });
  }

  /** The server's metrics, by name with labels as written (for example
   * `chat_logins_total{outcome="ok"}`); needs `--metrics-listen`. */
  async metrics() {
    if (!this.metricsUrl) throw new Error('this server was started without --metrics-listen');
    const { status, body } = await request(new URL(this.metricsUrl), { method: 'GET' });
    if (status !== 200) throw new Error(`GET ${this.metricsUrl}: ${status}`);
    const values = new Map();
    for (const line of body.split('\n')) {
      const m = /^([a-z_:][a-z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) values.set(m[1], Number(m[2]));
    }
    return values;
  }

  async register(...users) {
    for (const username of users) {
      const { status, body } = await this.post('/api/register', { username, password: PASSWORD });
      if (status !== 201) throw new Error(`register ${username}: ${status} ${body}`);
    }
  }
}

function request(url, { method, headers = {}, body, ca }) {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, { method, headers, ca }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, body: raw.toString(), raw });
      });
    });
    req.on('error', reject);
    req.setTimeout(WAIT, () => req.destroy(new Error(`${method} ${url}: no answer`)));
    req.end(body);
  });
}

/** Rejects with a readable message when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Headless Chromium; `insecure` accepts the server's self-signed certificate. */
export function launchBrowser({ insecure = false } = {}) {
  // The background-networking flags keep Chromium from calling home, which
  // this machine's closed network refuses (noisily).
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-quic',
    '--disable-sync',
    '--no-first-run',
  ];
  if (insecure) args.push('--ignore-certificate-errors');
  assertServesThisTree();
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/**
 * One person: a fresh browser context (own cookies and storage) with one
 * page, watched for script errors, dialogs and every WebSocket frame.
 */
export async function openPage(browser, server, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: server.tls });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const watch = { errors: [], dialogs: [], frames: [], sockets: [], response: null };
  page.on('pageerror', (e) => watch.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') watch.errors.push(m.text());
  });
  page.on('dialog', (d) => {
    watch.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('websocket', (ws) => {
    watch.sockets.push(ws.url());
    ws.on('framereceived', ({ payload }) => watch.frames.push(String(payload)));
  });
  watch.response = await page.goto(server.url);
  return { context, page, watch };
}

/** chat-server embeds web/ when it is built (server/src/web.rs): a binary
 * built before these files changed would test other files than these, so
 * the tests refuse to run against it. */
function assertServesThisTree() {
  if (!existsSync(SERVER_BIN)) return;
  const image = readFileSync(SERVER_BIN);
  const dir = path.join(REPO, 'web');
  const stale = readdirSync(dir)
    .filter((name) => /\.(html|js|css|svg)$/.test(name))
    .filter((name) => !image.includes(readFileSync(path.join(dir, name))));
  if (stale.length > 0) {
    throw new Error(
      `${SERVER_BIN} embeds other versions of web/${stale.join(', web/')}: rebuild it (cargo build --bin chat-server)`,
    );
  }
}

/** The session token the page keeps in sessionStorage (null: none). */
export function sessionToken(page) {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('chat.session') ?? 'null')?.token ?? null);
}

/** Signs in (registering first if asked) and waits for the connection. */
export async function signIn(page, user, { register = false } = {}) {
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: register ? 'Create account' : 'Sign in' }).click();
  await waitForState(page, 'connected');
}

/** Waits until the connection banner shows `state`. */
export async function waitForState(page, state) {
  await page.locator(`#banner[data-state="${state}"]`).waitFor();
}

/** Joins (or creates) a room through the room field, and waits until it is open. */
export async function joinRoom(page, room) {
  await openRoomsDrawerIfNarrow(page);
  await page.getByLabel('Join or create a room').fill(room);
  await page.getByLabel('Join or create a room').press('Enter');
  await page.locator('#room-title', { hasText: `# ${room}` }).waitFor();
}

async function openRoomsDrawerIfNarrow(page) {
  const toggle = page.locator('#rooms-toggle');
  if ((await toggle.isVisible()) && (await toggle.getAttribute('aria-expanded')) === 'false') await toggle.click();
}

/** Types a message and sends it with Enter; waits for the server's echo. */
export async function say(page, text) {
  const box = page.locator('#composer-input');
  await box.fill(text);
  await box.press('Enter');
  await messageText(page, text, { own: true }).waitFor();
}

/** The text of a message in the open room, matched exactly (not counting
 * our own still waiting for the server's confirmation). */
export function messageText(page, text, { own = false } = {}) {
  return page.locator(`#message-area .msg:not(.pending)${own ? '.own' : ''} .text`).filter({ hasText: exactly(text) });
}

/** A pattern matching the whole of `text`, nothing more. */
export function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

/** Waits until `user` is in the open room's member list. */
export async function waitForMember(page, user) {
  await page.locator('#member-list .member bdi', { hasText: exactly(user) }).waitFor({ state: 'attached' });
}

/** Writes a screenshot for people to look at. */
export async function screenshot(page, name) {
  mkdirSync(OUTPUT, { recursive: true });
  const file = path.join(OUTPUT, name);
  await page.screenshot({ path: file });
  return file;
}

/** Runs chat-cli as `user` against `server`; the password goes in the environment, as documented. */
export function runCli(server, user, args, stdio = ['ignore', 'pipe', 'pipe']) {
  return spawn(CLI_BIN, ['--server', server.url, '--user', user, ...args], {
    stdio,
    env: { ...process.env, CHAT_PASSWORD: PASSWORD },
  });
}

/** Resolves with a child's exit code (or the signal that ended it). */
export function exitOf(child) {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
}

/** Sends each of `lines` to `room` as `user` with chat-cli, which exits once
 * the server has relayed them all. */
export async function cliSend(server, user, room, lines) {
  const child = runCli(server, user, ['send', '--room', room], ['pipe', 'ignore', 'pipe']);
  const stderr = [];
  child.stderr.on('data', (c) => stderr.push(String(c)));
  const exited = exitOf(child);
  child.stdin.end(`${lines.join('\n')}\n`);
  let code;
  try {
    code = await withTimeout(exited, WAIT, `chat-cli send to ${room} to exit`);
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  if (code !== 0) throw new Error(`chat-cli send failed (${code}): ${stderr.join('')}`);
}
