"""A TCP proxy on loopback that delays everything the upstream server sends by a fixed time:
a "slow KBS" (each server flight arrives `delay` seconds late, TLS untouched) for the
concurrency tests and the REST benchmark."""
import collections
import socket
import threading
import time


class SlowProxy:
    def __init__(self, upstream_port: int, delay: float):
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = delay
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.connections = 0
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            self.connections += 1
            self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, self.delay), daemon=True).start()

    def _pipe(self, src, dst, delay):
        if not delay:
            while True:
                try:
                    d = src.recv(65536)
                    if not d:
                        break
                    dst.sendall(d)
                except OSError:
                    break
            self._shut(dst)
            return
        # Delayed direction: a reader stamps each chunk, a writer releases it `delay` later, so a
        # flight of several TLS records costs one delay, not one per record.
        q, cv = collections.deque(), threading.Condition()

        def writer():
            while True:
                with cv:
                    while not q:
                        cv.wait()
                    due, d = q.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if d is None:
                    self._shut(dst)
                    return
                try:
                    dst.sendall(d)
                except OSError:
                    return

        threading.Thread(target=writer, daemon=True).start()
        while True:
            try:
                d = src.recv(65536)
            except OSError:
                d = b""
            with cv:
                q.append((time.monotonic() + delay, d or None))
                cv.notify()
            if not d:
                return

    @staticmethod
    def _shut(s):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
