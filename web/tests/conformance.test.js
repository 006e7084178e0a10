// The conformance adapter (conformance-client.js), run as a conformance test
// runs it: a child process talking JSON lines, against the real server
// behind a TCP proxy that cuts the connection right before the server's
// `ack` reaches the page, refuses connections for a moment, then lets them
// through. The page must come back on its session, resume, resend the
// message with its client_id, and hold exactly the room's messages.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { ChatServer, CHROMIUM, CLI_SKIP, cliSend, exitOf, PASSWORD, SERVER_BIN, WAIT, withTimeout } from './helpers.js';
import { embedsTree, WEB_DIR } from './tree-files.js';

const ADAPTER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'conformance-client.js');
/** How long the proxy refuses connections after a cut. */
const REFUSE_MS = 1500;

/**
 * A TCP proxy in front of `upstreamPort`. Upgraded connections are watched
 * frame by frame from the server; `cutBeforeAck()` arms it to close both
 * sides instead of passing on the next `ack`, then to refuse (accept and
 * close at once) every new connection for REFUSE_MS.
 */
async function cuttingProxy(upstreamPort) {
  const state = { cutArmed: false, refusingUntil: 0, cuts: 0, connections: 0 };
  let onCut = () => {};
  const sockets = new Set();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    if (Date.now() < state.refusingUntil) {
      client.destroy();
      return;
    }
    state.connections += 1;
    const upstream = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    // A side that closes ends the other once what it sent is through.
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.end());
    client.pipe(upstream);
    let cut = false;
    const reader = serverFrames((frame) => {
      if (state.cutArmed && frame.opcode === 1 && JSON.parse(frame.payload.toString()).type === 'ack') {
        state.cutArmed = false;
        cut = true;
        return false;
      }
      return true;
    });
    upstream.on('data', (chunk) => {
      const pass = reader(chunk);
      if (pass.length) client.write(pass);
      if (!cut) return;
      // What came before the ack goes on; the ack and all after it never do.
      cut = false;
      state.cuts += 1;
      state.refusingUntil = Date.now() + REFUSE_MS;
      client.end();
      upstream.destroy();
      onCut();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    state,
    /** Resolves once the armed cut happened. */
    cutBeforeAck() {
      state.cutArmed = true;
      return new Promise((resolve) => {
        onCut = resolve;
      });
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Reads a server-to-client byte stream: the HTTP answer, then (after a 101)
 * WebSocket frames. Returns a function taking each chunk and giving back
 * the bytes to pass on: everything, up to a frame `onFrame` refuses.
 */
function serverFrames(onFrame) {
  let buffered = Buffer.alloc(0);
  let upgraded = false;
  let stopped = false;
  return (chunk) => {
    if (stopped) return Buffer.alloc(0);
    buffered = Buffer.concat([buffered, chunk]);
    const out = [];
    if (!upgraded) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        // Not an upgrade (yet): ordinary HTTP passes as it comes.
        if (!buffered.toString('latin1').startsWith('HTTP/1.1 101')) {
          const all = buffered;
          buffered = Buffer.alloc(0);
          return all;
        }
        return Buffer.alloc(0);
      }
      const head = buffered.subarray(0, end + 4);
      if (!head.toString('latin1').startsWith('HTTP/1.1 101')) {
        const all = buffered;
        buffered = Buffer.alloc(0);
        return all;
      }
      if (/sec-websocket-extensions/i.test(head.toString('latin1'))) throw new Error('the proxy cannot read compressed frames');
      upgraded = true;
      out.push(head);
      buffered = buffered.subarray(end + 4);
    }
    for (;;) {
      const frame = parseFrame(buffered);
      if (!frame) break;
      if (!onFrame(frame)) {
        stopped = true;
        break;
      }
      out.push(buffered.subarray(0, frame.size));
      buffered = buffered.subarray(frame.size);
    }
    return Buffer.concat(out);
  };
}

/** One whole unmasked frame at the start of `bytes`, or null. */
function parseFrame(bytes) {
  if (bytes.length < 2) return null;
  const opcode = bytes[0] & 0x0f;
  let length = bytes[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (bytes.length < 4) return null;
    length = bytes.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (bytes.length < 10) return null;
    length = Number(bytes.readBigUInt64BE(2));
    offset = 10;
  }
  if (bytes.length < offset + length) return null;
  return { opcode, payload: bytes.subarray(offset, offset + length), size: offset + length };
}

/** The adapter as a child process, with its lines on stdout as a queue. */
function startAdapter(url, user, room) {
  const env = { ...process.env, CHROMIUM, CONF_URL: url, CONF_USER: user, CONF_PASSWORD: PASSWORD, CONF_ROOM: room };
  if (!embedsTree(SERVER_BIN)) env.CONF_WEB_DIR = WEB_DIR;
  const child = spawn(process.execPath, [ADAPTER], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.on('data', (c) => stderr.push(String(c)));
  const lines = [];
  let wake = () => {};
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    wake();
  });
  const exited = exitOf(child);
  return {
    child,
    exited,
    stderr,
    /** The next line on stdout, parsed. */
    async next(what) {
      const line = await withTimeout(
        new Promise((resolve) => {
          const take = () => {
            if (lines.length) resolve(lines.shift());
          };
          wake = take;
          take();
        }),
        WAIT,
        `${what} from the adapter (stderr: ${stderr.join('')})`,
      );
      return JSON.parse(line);
    },
    send(command) {
      child.stdin.write(`${JSON.stringify(command)}\n`);
    },
    /** Asks `held` until `done(held)`; returns the last answer. */
    async heldUntil(done, what) {
      const deadline = Date.now() + WAIT;
      for (;;) {
        this.send({ held: true });
        const { held } = await this.next('a held answer');
        if (done(held) || Date.now() > deadline) return held;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

let server;

before(async () => {
  if (CLI_SKIP) return;
  server = await ChatServer.start();
  await server.register('alice', 'bob');
});

after(async () => {
  await server?.dispose();
});

test('a cut right before an ack: the page resumes, resends, and holds each stored message once', { skip: CLI_SKIP }, async () => {
  const proxy = await cuttingProxy(server.port);
  const adapter = startAdapter(proxy.url, 'alice', 'cut');
  try {
    assert.deepEqual(await adapter.next('the ready line'), { ready: true });
    assert.deepEqual(await adapter.heldUntil(() => true, 'held'), []);
    adapter.send({ send: 'one' });
    let held = await adapter.heldUntil((h) => h.length === 1, 'one message');
    assert.deepEqual(held, [{ seq: 1, from: 'alice', text: 'one' }]);

    const cut = proxy.cutBeforeAck();
    adapter.send({ send: 'two, acked too late' });
    await withTimeout(cut, WAIT, 'the proxy to cut before the ack');
    // While the page is away, someone else writes.
    await cliSend(server, 'bob', 'cut', ['three, from bob']);

    const expected = [
      { seq: 1, from: 'alice', text: 'one' },
      { seq: 2, from: 'alice', text: 'two, acked too late' },
      { seq: 3, from: 'bob', text: 'three, from bob' },
    ];
    held = await adapter.heldUntil((h) => h.length >= 3, 'three messages');
    assert.deepEqual(held, expected);
    // Live again: the next message follows with no gap, and nothing repeats.
    adapter.send({ send: 'four' });
    held = await adapter.heldUntil((h) => h.length >= 4, 'four messages');
    assert.deepEqual(held, [...expected, { seq: 4, from: 'alice', text: 'four' }]);
    assert.equal(proxy.state.cuts, 1);

    adapter.send({ quit: true });
    assert.equal(await withTimeout(adapter.exited, WAIT, 'the adapter to quit'), 0, adapter.stderr.join(''));
    assert.ok(!adapter.stderr.join('').includes(PASSWORD), 'the password was printed');
  } finally {
    adapter.child.kill('SIGKILL');
    await proxy.close();
  }
});

test('the adapter exits when its input ends, and with 2 on a command it does not know', { skip: CLI_SKIP }, async () => {
  const quiet = startAdapter(server.url, 'bob', 'other');
  const confused = startAdapter(server.url, 'alice', 'other');
  try {
    assert.deepEqual(await quiet.next('the ready line'), { ready: true });
    quiet.child.stdin.end();
    assert.equal(await withTimeout(quiet.exited, WAIT, 'the adapter to exit'), 0, quiet.stderr.join(''));

    assert.deepEqual(await confused.next('the ready line'), { ready: true });
    confused.send({ dance: true });
    assert.equal(await withTimeout(confused.exited, WAIT, 'the adapter to fail'), 2);
    assert.match(confused.stderr.join(''), /unknown command/);
  } finally {
    quiet.child.kill('SIGKILL');
    confused.child.kill('SIGKILL');
  }
});

test('the adapter fails, saying why, when it cannot sign in', async () => {
  const own = await ChatServer.start();
  const adapter = startAdapter(own.url, 'nobody', 'room');
  try {
    assert.equal(await withTimeout(adapter.exited, WAIT, 'the adapter to fail'), 1);
    assert.match(adapter.stderr.join(''), /sign-in refused: Wrong user name or password/);
  } finally {
    adapter.child.kill('SIGKILL');
    await own.dispose();
  }
});
