"""What a Python user writes after the tutorial: an asyncio ping server.

    python3 asyncio_server.py PORT

Each line "ping REST" gets "pong REST" (sockit's ping semantics).
Prints "listening on tcp://127.0.0.1:PORT" once ready (PORT 0 works).
"""
import asyncio
import socket
import sys

from thread_server import reply


class Ping(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        if lines:
            self.transport.write(b"".join(reply(l) for l in lines))


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Ping, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on tcp://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
