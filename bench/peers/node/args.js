// Shared start-up helpers for the Node benchmark peers (see ../README.md):
// the common command line, the `LISTENING <port>` line and signal handling.
'use strict';

const { parseArgs } = require('node:util');

/** Parses `--port N --host H [--cert FILE --key FILE]`; exits 2 on bad usage. */
function peerArgs() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: '0' },
        host: { type: 'string', default: '127.0.0.1' },
        cert: { type: 'string' },
        key: { type: 'string' },
      },
    }));
  } catch (err) {
    fail(err.message);
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${values.port}`);
  if (Boolean(values.cert) !== Boolean(values.key)) fail('--cert and --key go together');
  return { port, host: values.host, cert: values.cert, key: values.key };
}

function fail(message) {
  console.error(`usage: node ${process.argv[1]} [--port N] [--host H] [--cert FILE --key FILE]: ${message}`);
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
