"""The loopback ceiling of the bench client: a raw-socket HTTP/1.1 server that reads
every body into one reused buffer (``recv_into``) and discards it. No server that
keeps the bytes can go faster over this loopback with this client.

    python discard.py PORT
    PUT|PATCH|POST <any path>   (Content-Length bodies only)  -> 204
    GET /status                                                -> 200

One thread per connection, keep-alive; nothing is parsed but the request line and
Content-Length.
"""

import socket
import sys
import threading

BUFFER = 1024 * 1024


def serve(conn: socket.socket) -> None:
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    pending = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in pending:
                more = conn.recv(65536)
                if not more:
                    return
                pending += more
            head, _, pending = pending.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            left = length - len(pending[:length])
            pending = pending[length:]
            while left:
                n = conn.recv_into(view[: min(BUFFER, left)])
                if not n:
                    return
                left -= n
            if method == "GET":
                body = b'{"ok": true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            else:
                conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def main() -> None:
    port = int(sys.argv[1])
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
