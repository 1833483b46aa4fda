"""A TCP client socket with ONE overall deadline for a whole exchange.

Every read and write gets only the time left until the deadline, so a server that stalls,
trickles bytes or never closes cannot hold hgs past it.
"""

import socket
import time

from hgs.errors import UpsError


class DeadlineConnection:
    """Given host, port and a timeout in seconds for the whole exchange, connects.

    Raises UpsError (prefixed with ``what``) on refusal, timeout, EOF or an oversized reply.
    """

    def __init__(self, what, host, port, timeout_s, max_bytes=256 * 1024):
        self.what = what
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.max_bytes = max_bytes
        self.received = 0
        self._buffer = b""
        try:
            self.sock = socket.create_connection((host, port), timeout=self._remaining())
        except socket.timeout:
            raise self.error(f"no connection within {timeout_s:g} s") from None
        except OSError as err:
            raise self.error(f"cannot connect ({err.strerror or err}); is the daemon running?") from None
        except (ValueError, OverflowError) as err:  # an address or port no socket takes (e.g. a 70-char label)
            raise self.error(f"cannot connect to this address ({err})") from None

    def error(self, message):
        return UpsError(f"{self.what}: {message}")

    def _remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.error(f"no complete answer within {self.timeout_s:g} s")
        return left

    def send(self, data):
        try:
            self.sock.settimeout(self._remaining())
            self.sock.sendall(data)
        except socket.timeout:
            raise self.error(f"no complete answer within {self.timeout_s:g} s") from None
        except OSError as err:
            raise self.error(f"connection failed while sending ({err.strerror or err})") from None

    def _fill(self):
        try:
            self.sock.settimeout(self._remaining())
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise self.error(f"no complete answer within {self.timeout_s:g} s") from None
        except OSError as err:
            raise self.error(f"connection failed while reading ({err.strerror or err})") from None
        if not chunk:
            raise self.error("the daemon closed the connection in the middle of its answer")
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise self.error(f"answer larger than {self.max_bytes // 1024} KiB; not a status reply")
        self._buffer += chunk

    def read_exact(self, count):
        while len(self._buffer) < count:
            self._fill()
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_line(self):
        """Returns one line without its newline (b'\\n' or b'\\r\\n')."""
        while b"\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def show_address(host, port):
    """Returns 'host:port', with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
