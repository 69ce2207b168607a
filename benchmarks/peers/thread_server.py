"""The classic tutorial ping/pong server: one thread per connection.

    python3 thread_server.py PORT

Each line "ping REST" gets "pong REST" (sockit's ping semantics).
Prints "listening on tcp://127.0.0.1:PORT" once ready (PORT 0 works).
"""
import socket
import sys
import threading


def reply(line: bytes) -> bytes:
    cr = line.endswith(b"\r")
    if cr:
        line = line[:-1]
    out = b"pong" + (line[4:] if line.startswith(b"ping ") else b"")
    return out + (b"\r\n" if cr else b"\n")


def handle(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            if lines:
                conn.sendall(b"".join(reply(l) for l in lines))


def main() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(sys.argv[1])))
    srv.listen(4096)
    print(f"listening on tcp://127.0.0.1:{srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
