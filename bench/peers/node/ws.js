// Benchmark peer: the `ws` package (WebSocketServer on a Node http/https
// server) with a Map of room -> Set of sockets. Implements the bench peer
// contract in ../README.md: ws(s)://HOST:PORT/ws?room=NAME, every text message
// goes to every member of the room, the sender included.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { WebSocket, WebSocketServer } = require('ws');
const { peerArgs, announce, exitOnSignals } = require('./args');

const args = peerArgs();

const server = args.cert
  ? https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
  : http.createServer();
server.on('request', (req, res) => {
  res.writeHead(404).end();
});

const wss = new WebSocketServer({
  server,
  path: '/ws',
  perMessageDeflate: false,
  maxPayload: 1024 * 1024,
});

/** @type {Map<string, Set<WebSocket>>} */
const rooms = new Map();

wss.on('connection', (ws, req) => {
  const room = new URL(req.url, 'http://localhost').searchParams.get('room') ?? '';
  let members = rooms.get(room);
  if (!members) {
    members = new Set();
    rooms.set(room, members);
  }
  members.add(ws);

  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    for (const member of members) {
      if (member.readyState === WebSocket.OPEN) member.send(data, { binary: false });
    }
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
  });
  ws.on('error', (err) => console.error(`ws: connection error: ${err.message}`));
});

server.listen(args.port, args.host, () => announce(server.address().port));
exitOnSignals();
