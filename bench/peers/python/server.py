"""Benchmark peer: Python `websockets` (asyncio API) relay.

Implements the bench peer contract in ../README.md: ws(s)://HOST:PORT/ws?room=NAME,
every text message is broadcast (websockets.broadcast) to every member of the
room, the sender included.
"""

import argparse
import asyncio
import signal
import ssl
import sys
from collections import defaultdict
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets import broadcast
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError

ROOMS: defaultdict[str, set[ServerConnection]] = defaultdict(set)


def room_of(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("room", [""])[0]


def only_ws_path(connection: ServerConnection, request):
    if urlsplit(request.path).path != "/ws":
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def relay(connection: ServerConnection) -> None:
    room = room_of(connection.request.path)
    members = ROOMS[room]
    members.add(connection)
    try:
        async for message in connection:
            if isinstance(message, str):
                broadcast(members, message)
    except ConnectionClosedError:
        pass  # the client went away without a close handshake; nothing to log
    finally:
        members.discard(connection)
        if not members and ROOMS.get(room) is members:
            del ROOMS[room]


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Report running out of file descriptors once, not once per failed accept.

    asyncio logs a traceback for every accept() that fails with EMFILE, up to
    `backlog` times a second, which would flood stderr in a connection storm.
    """
    if context.get("message", "").startswith("socket.accept() out of system resource"):
        if not getattr(quiet_accept_errors, "said", False):
            quiet_accept_errors.said = True
            print(f"server.py: accept failed: {context.get('exception')}", file=sys.stderr)
        return
    loop.default_exception_handler(context)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")

    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)

    async with serve(
        relay,
        args.host,
        args.port,
        ssl=tls,
        process_request=only_ws_path,
        compression=None,
        max_size=1024 * 1024,
        # No server-initiated keepalive: the relay only answers the client's pings.
        ping_interval=None,
        # asyncio listens with a backlog of 100; use the 511 of Node's http
        # servers so connection storms are not throttled by the accept queue.
        backlog=511,
    ) as server:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(quiet_accept_errors)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.close)
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
