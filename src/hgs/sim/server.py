"""The simulator server: one resident process per simulated site, holding it in memory.

Every simulated host's `xe` is a small client (hgs.sim.xeclient) that sends its host name
and arguments over the site's Unix socket (``SITE.json.sock``) and prints what comes back,
so an xe call costs a connect and a few lines of Python here instead of a Python start-up
and a JSON file rewritten under a lock. The test harness, the demo and the Wake-on-LAN
listener use the same socket through ``SiteClient``, which speaks the ``SiteStore`` API.

Wire format (the C client speaks it too)::

    xe call:    "X<length>\\n" HOST "\\0" ARG "\\0" ARG "\\0" ...
    its answer: "<exit status> <stdout length> <stderr length>\\n" STDOUT STDERR
    harness:    "J<length>\\n" JSON request   ->   "<length>\\n" JSON answer

A blocked call (a VM shutting down) ends as soon as its client goes away; the task it
started goes on in the site, as xapi's does. Run: ``python -m hgs.sim.server --site
SITE.json`` (``SiteServerProcess`` starts and stops it by its PID).
"""

import contextlib
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

from hgs.sim import site as sitemod
from hgs.sim import stop_process
from hgs.sim.xe import Xe

PERSIST_INTERVAL_S = 1.0  # the state file lags the site by at most this (a crash loses no more)
STORE_METHODS = {"read", "read_hosts", "wake", "power_off", "set_vm", "set_fault", "set_pool", "flush"}


def socket_path(site_path):
    """Returns the Unix socket of the site ``site_path``: beside it, or in the temp folder when
    that path would be too long for a socket address (108 bytes)."""
    path = os.path.abspath(str(site_path)) + ".sock"
    if len(path.encode()) < 100:
        return path
    import hashlib
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"hgs-sim-{hashlib.sha256(path.encode()).hexdigest()[:16]}.sock")


def _recv_exact(sock, count):
    chunks, left = [], count
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
        if len(data) > 64:
            raise ValueError("header too long")
    return data[:-1]


class _Hangups:
    """One thread watching the sockets of blocked calls: a client that goes away cancels its call."""

    def __init__(self):
        self.poller = select.epoll()
        self.calls = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def add(self, sock, call):
        with self.lock:
            self.calls[sock.fileno()] = call
            self.poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP)

    def remove(self, sock):
        with self.lock:
            if self.calls.pop(sock.fileno(), None) is not None:
                self.poller.unregister(sock.fileno())

    def _run(self):
        while True:
            for fd, _ in self.poller.poll():
                with self.lock:
                    call = self.calls.pop(fd, None)
                    if call is not None:
                        self.poller.unregister(fd)
                if call is not None:
                    call.cancel()  # the client sends nothing after its request: readable means gone


class SiteServer:
    """Serves ``store`` on the Unix socket ``path`` until ``stop()``."""

    def __init__(self, store, path):
        self.store = store
        self.path = path
        self.hangups = _Hangups()
        self.done = threading.Event()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1024)
        threading.Thread(target=self._tick, daemon=True).start()
        threading.Thread(target=self._persist, daemon=True).start()

    def serve(self):
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self.done.is_set():
                    return
                raise
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def stop(self):
        self.done.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.store.close()

    def _tick(self):
        """Advances the site when a VM task or a host power change is due, so calls waiting for
        a VM (and the power watchers) see it at once, not at the next call."""
        while not self.done.is_set():
            due = self.store.next_due()
            wait_s = 1.0 if due is None else sitemod.real_seconds(self.store.state, due - sitemod.sim_now(self.store.state))
            if self.store.due_changed.wait(min(1.0, wait_s + 0.001)):
                self.store.due_changed.clear()
                continue
            with self.store.transaction():
                pass

    def _persist(self):
        while not self.done.wait(PERSIST_INTERVAL_S):
            self.store.flush()

    def _handle(self, conn):
        try:
            data = conn.recv(65536)  # a whole xe request, nearly always
            while b"\n" not in data:
                more = conn.recv(65536)
                if not more or len(data) > 64:
                    raise ValueError("no request header")
                data += more
            header, _, payload = data.partition(b"\n")
            kind, length = header[:1], int(header[1:])
            if len(payload) < length:
                payload += _recv_exact(conn, length - len(payload))
            if kind == b"X":
                self._xe(conn, payload)
            elif kind == b"J":
                self._harness(conn, json.loads(payload))
        except (OSError, ValueError, ConnectionError):
            pass
        finally:
            conn.close()

    def _xe(self, conn, payload):
        host, *argv = payload.decode("utf-8", "surrogateescape").split("\0")
        if argv and argv[-1] == "":
            argv.pop()
        call = Xe(self.store, host)
        self.hangups.add(conn, call)
        try:
            code, out, err = call.run(argv)
        finally:
            self.hangups.remove(conn)
        out, err = out.encode("utf-8", "surrogateescape"), err.encode("utf-8", "surrogateescape")
        conn.sendall(b"%d %d %d\n" % (code, len(out), len(err)) + out + err)

    def _harness(self, conn, request):
        op = request["op"]
        if op == "transaction":
            with self.store.transaction() as state:
                _send_json(conn, state)
                answer = _recv_json(conn)
            if answer.get("commit"):
                self.store.replace(answer["state"])
            _send_json(conn, {"ok": True})
        elif op == "cpu_seconds":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            _send_json(conn, {"result": usage.ru_utime + usage.ru_stime})
        elif op in STORE_METHODS:
            _send_json(conn, {"result": getattr(self.store, op)(*request.get("args", ()), **request.get("kwargs", {}))})
        else:
            _send_json(conn, {"error": f"unknown request {op!r}"})


def _send_json(conn, value):
    data = json.dumps(value).encode("utf-8")
    conn.sendall(b"%d\n" % len(data) + data)


def _recv_json(conn):
    return json.loads(_recv_exact(conn, int(_recv_line(conn))))


class SiteClient:
    """The site held by a simulator server, for another process: the ``SiteStore`` API."""

    def __init__(self, site_path):
        self.path = str(site_path)
        self.calls_path = self.path + ".calls"
        self.socket = socket_path(site_path)

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket)
        except OSError:
            sock.close()
            raise
        return sock

    def _request(self, op, *args, **kwargs):
        data = json.dumps({"op": op, "args": args, "kwargs": kwargs}).encode("utf-8")
        with contextlib.closing(self._connect()) as sock:
            sock.sendall(b"J%d\n" % len(data) + data)
            answer = _recv_json(sock)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["result"]

    def __getattr__(self, name):
        if name in STORE_METHODS:
            return lambda *args, **kwargs: self._request(name, *args, **kwargs)
        raise AttributeError(name)

    @contextlib.contextmanager
    def transaction(self):
        """Yields a copy of the state, holding the site lock in the server; writes it back."""
        data = json.dumps({"op": "transaction"}).encode("utf-8")
        with contextlib.closing(self._connect()) as sock:
            sock.sendall(b"J%d\n" % len(data) + data)
            state = _recv_json(sock)
            try:
                yield state
            except BaseException:
                _send_json(sock, {"commit": False})
                _recv_json(sock)
                raise
            _send_json(sock, {"commit": True, "state": state})
            _recv_json(sock)

    def calls(self):
        return sitemod.read_calls(self.calls_path)


class SiteServerProcess:
    """Starts ``python -m hgs.sim.server`` for the site file ``site_path``; ``stop()`` ends it by its PID."""

    def __init__(self, site_path, log_path=None, timeout_s=10.0):
        self.site_path = str(site_path)
        self.socket = socket_path(site_path)
        log = open(log_path or self.site_path + ".server.log", "ab")
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "hgs.sim.server", "--site", self.site_path],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        client = SiteClient(site_path)
        while True:
            try:
                client.read_hosts()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the simulator server for {self.site_path} did not start "
                                       f"(see {self.site_path}.server.log)") from None
                time.sleep(0.01)

    @property
    def pid(self):
        return self.proc.pid

    def cpu_seconds(self):
        """Returns the user + system CPU seconds the server has used so far (its getrusage)."""
        return SiteClient(self.site_path)._request("cpu_seconds")

    def stop(self):
        stop_process(self.proc, grace_s=10)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hgs.sim.server", description=__doc__.splitlines()[0])
    parser.add_argument("--site", required=True, help="the site state file (written by SiteStore.create)")
    args = parser.parse_args(argv)
    threading.stack_size(256 * 1024)  # a thread per call: thousands may wait for their VM at once
    store = sitemod.SiteStore.load(args.site, persist_interval_s=PERSIST_INTERVAL_S)
    server = SiteServer(store, socket_path(args.site))
    signal.signal(signal.SIGTERM, _stop_signal)
    try:
        server.serve()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        server.stop()
    return 0


class _Stop(Exception):
    """SIGTERM: stop serving, write the state."""


def _stop_signal(*_):
    raise _Stop()


if __name__ == "__main__":
    sys.exit(main())
