// Benchmark peer: Socket.IO (package `socket.io`) on a Node http/https server,
// websocket transport only. Implements the Socket.IO part of the bench peer
// contract in ../README.md: ws(s)://HOST:PORT/socket.io/?EIO=4&transport=websocket&room=NAME;
// the socket joins room NAME and every `msg` event with one string argument is
// emitted to the whole room, the sender included.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { Server } = require('socket.io');
const { peerArgs, announce, exitOnSignals } = require('./args');

const args = peerArgs();

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

server.listen(args.port, args.host, () => announce(server.address().port));
exitOnSignals();
