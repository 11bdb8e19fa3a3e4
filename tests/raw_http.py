"""A raw HTTP/1.1 server on a thread, for the load generators' tests: it reads each request whole
(headers, then the Content-Length body) and lets `answer` write the exact bytes sent back, so a
test can send what no real server would (a chunked body, a close, a held answer)."""

from __future__ import annotations

import socket
import threading


class RawHTTP:
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self, conn: socket.socket) -> bool:
        """Write the answer to one request; False closes the connection."""
        raise NotImplementedError

    def close(self):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                buf = rest[length:]
                if not self.answer(conn):
                    return
