// Benchmark peer: Socket.IO (package `socket.io`) on a Node http/https server,
// websocket transport only. Implements the Socket.IO part of the bench peer
// contract in ../README.md: ws(s)://HOST:PORT/socket.io/?EIO=4&transport=websocket&room=NAME;
// the socket joins room NAME and every `msg` event with one string argument is
// emitted to the whole room, the sender included.
//
// With `--redis URL` it is one node of a cluster: `@socket.io/redis-adapter`
// on that Redis, set up as its documentation recommends (a pub and a sub
// client per node, the sub one a duplicate of the pub one), so `io.to(room)`
// reaches the room's members on every node started with the same URL and
// `--redis-prefix` (the adapter's channel prefix, default `socket.io`).
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { Server } = require('socket.io');
const { peerArgs, announce, exitOnSignals } = require('./args');

const args = peerArgs({ redis: {}, 'redis-prefix': { default: 'socket.io' } });

const server = args.cert
  ? https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
  : http.createServer();

const io = new Server(server, {
  transports: ['websocket'],
  perMessageDeflate: false,
  maxHttpBufferSize: 1024 * 1024,
  serveClient: false,
});

io.on('connection', (socket) => {
  const { room } = socket.handshake.query;
  const name = typeof room === 'string' ? room : '';
  socket.join(name);
  socket.on('msg', (text) => {
    if (typeof text === 'string') io.to(name).emit('msg', text);
  });
});

/** Attaches the Redis adapter; resolves once both clients are connected. */
async function joinCluster(url, prefix) {
  // Required here, so that a single node needs neither package.
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pubClient = createClient({ url });
  const subClient = pubClient.duplicate();
  for (const [role, client] of [['pub', pubClient], ['sub', subClient]]) {
    client.on('error', (err) => console.error(`socketio: redis ${role} client: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createAdapter(pubClient, subClient, { key: prefix }));
}

(args.redis ? joinCluster(args.redis, args['redis-prefix']) : Promise.resolve())
  .then(() => server.listen(args.port, args.host, () => announce(server.address().port)))
  .catch((err) => {
    console.error(`socketio: cannot join the cluster on ${args.redis}: ${err.message}`);
    process.exit(1);
  });
exitOnSignals();
