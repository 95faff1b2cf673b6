"""A TCP proxy in front of Azurite that breaks the connection on cue, for the model store's fault tests.

Faults are triggered by counts (response bytes forwarded, connections accepted), never by time, so a
test decides exactly where a transfer breaks whatever the machine's speed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from enum import StrEnum


class AfterCut(StrEnum):
    DOWN = "down"
    """The store is gone: every connection is closed, and every new one closed at once."""
    STALL = "stall"
    """The network hangs: no connection gets another byte, new ones are accepted and never answered."""
    RESTART = "restart"
    """The store restarts: every connection is closed, the next ``refuse`` ones too, then it works."""


class FaultProxy:
    def __init__(self, upstream_port: int, *, cut_after: int, after_cut: AfterCut, refuse: int = 0):
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        """Response bytes forwarded (over all connections) before the cut."""
        self.after_cut = after_cut
        self.refuse = refuse
        self.forwarded = 0
        self.refused = 0
        self.cut = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                _close(s)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
                if self.cut.is_set():
                    if self.after_cut is AfterCut.STALL:
                        continue  # accepted, never answered
                    if self.after_cut is AfterCut.DOWN or self.refused < self.refuse:
                        self.refused += 1
                        _close(client)
                        continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        try:
            while data := src.recv(65536):
                cut_here = False
                if response:
                    with self._lock:
                        if self.cut.is_set() and self.after_cut is AfterCut.STALL:
                            break
                        if not self.cut.is_set() and self.forwarded + len(data) > self.cut_after:
                            data = data[: self.cut_after - self.forwarded]
                            cut_here = True
                        self.forwarded += len(data)
                dst.sendall(data)
                if cut_here:
                    self._cut()
                    break
        except OSError:
            pass
        if self.after_cut is AfterCut.STALL and self.cut.is_set():
            self._closed.wait()  # hold the connection open, silent
        _close(src)
        _close(dst)

    def _cut(self) -> None:
        with self._lock:
            self.cut.set()
            if self.after_cut is not AfterCut.STALL:
                for s in self._sockets:
                    _close(s)
                self._sockets.clear()


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
