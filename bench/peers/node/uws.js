// Benchmark peer: uWebSockets.js (npm @trufflesuite/uws-js-unofficial) with its
// built-in pub/sub, one topic per room. Implements the bench peer contract in
// ../README.md: ws(s)://HOST:PORT/ws?room=NAME, every text message goes to
// every member of the room, the sender included.
'use strict';

// Benchmark the native build only, never the package's pure-JS fallback.
delete process.env.UWS_USE_FALLBACK;
const uWS = require('@trufflesuite/uws-js-unofficial');
const { peerArgs, announce, exitOnSignals } = require('./args');

const args = peerArgs();
if (typeof uWS.SSLApp !== 'function') {
  console.error('uws: the native uWebSockets.js binary did not load for this Node.js');
  process.exit(1);
}

const app = args.cert
  ? uWS.SSLApp({ cert_file_name: args.cert, key_file_name: args.key })
  : uWS.App();

app.ws('/ws', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024 * 1024,
  maxBackpressure: 16 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  // No server-initiated keepalive: the relay only answers the client's pings.
  idleTimeout: 0,

  upgrade: (res, req, context) => {
    res.upgrade(
      { room: req.getQuery('room') ?? '' },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.subscribe(ws.getUserData().room);
  },
  message: (ws, message, isBinary) => {
    if (isBinary) return;
    // app.publish reaches every subscriber, the sender included.
    app.publish(ws.getUserData().room, message, false);
  },
});

app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end();
});

app.listen(args.host, args.port, (listenSocket) => {
  if (!listenSocket) {
    console.error(`uws: cannot listen on ${args.host}:${args.port}`);
    process.exit(1);
  }
  announce(uWS.us_socket_local_port(listenSocket));
});

exitOnSignals();
