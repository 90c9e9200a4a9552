"""A loopback TCP proxy whose link can be cut and restored: the network fault the tests and the quickstart
inject on purpose (a device losing its uplink)."""

from __future__ import annotations

import contextlib
import socket
import threading

__all__ = ["CuttableLink"]


class CuttableLink:
    """Listens on a free loopback port and forwards to ``target``. ``cut()`` drops every connection and
    refuses new ones (as a dead uplink would); ``restore()`` brings the link back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._up = threading.Event()
        self._up.set()
        self._closed = False
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="netcut-accept", daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        with self._lock:
            self._up.clear()
            conns, self._conns = self._conns, []
        for conn in conns:
            _drop(conn)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        # On Linux, close() alone does not wake a thread blocked in accept(); shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(timeout=5)

    def __enter__(self) -> CuttableLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._up.is_set():  # cut while connecting
                    _drop(client)
                    _drop(upstream)
                    continue
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns = [c for c in self._conns if c is not src and c is not dst]
            _drop(src)
            _drop(dst)


def _drop(conn: socket.socket) -> None:
    """Really end a connection: shutdown() wakes any thread blocked in recv() on it and sends the peer a FIN;
    close() alone leaves the connection open while another thread is still reading it."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        conn.close()
