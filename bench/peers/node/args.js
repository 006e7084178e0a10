// Shared start-up helpers for the Node benchmark peers (see ../README.md):
// the common command line, the `LISTENING <port>` line and signal handling.
'use strict';

const { parseArgs } = require('node:util');

/**
 * Parses `--port N --host H [--cert FILE --key FILE]`, plus the string
 * options a peer adds in `extra` (`{ name: { default } }`); exits 2 on bad
 * usage. The extra values come back under their names.
 */
function peerArgs(extra = {}) {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: '0' },
        host: { type: 'string', default: '127.0.0.1' },
        cert: { type: 'string' },
        key: { type: 'string' },
        ...Object.fromEntries(
          Object.entries(extra).map(([name, spec]) => [name, { type: 'string', ...spec }]),
        ),
      },
    }));
  } catch (err) {
    fail(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${values.port}`);
  if (Boolean(values.cert) !== Boolean(values.key)) fail('--cert and --key go together');
  const own = Object.fromEntries(Object.keys(extra).map((name) => [name, values[name]]));
  return { ...own, port, host: values.host, cert: values.cert, key: values.key };
}

function fail(message) {
  console.error(`usage: node ${process.argv[1]} [--port N] [--host H] [--cert FILE --key FILE] [peer options]: ${message}`);
  process.exit(2);
}

/** Prints the one stdout line the bench harness waits for. */
function announce(port) {
  process.stdout.write(`LISTENING ${port}\n`);
}

/** Exits 0 at once on SIGTERM or SIGINT. */
function exitOnSignals() {
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
}

module.exports = { peerArgs, announce, exitOnSignals };
