"""SSH to a host: one connection, many channels, hgs's own deadline on every command.

Host keys are pinned (hgs's known_hosts file, RejectPolicy): an unknown or changed key is a
clear, fatal error for that host. Authentication is by key only. ``run`` enforces a real
deadline (paramiko's timeout is per read) and drains stdout and stderr while waiting, so a
chatty command cannot deadlock. ``start`` returns a ``Stream`` whose output lines are read as
they come, for a batch of parallel xe calls in one channel.
"""

import logging
import os
import shlex
import socket
import threading
import time

from hgs import permissions
from hgs.errors import HgsError

# paramiko logs failures itself; hgs reports them as RemoteError, so its own lines are not wanted on stderr.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


class RemoteError(HgsError):
    """The host could not be reached or refused us (the message says which and what to do)."""


class HostKeyError(RemoteError):
    """The host's key is not pinned, or it changed: a fatal error for that host."""


class UnsafeTrustFile(HostKeyError):
    """The SSH key or hgs's known_hosts (or a folder above them) is open to other users: refused,
    not retried, with the command that fixes it."""


class RemoteTimeout(RemoteError):
    """A command did not finish within its deadline (the channel is closed)."""


class ConnectionLost(RemoteError):
    """The connection dropped while a command ran (e.g. the host powered off)."""


def command_line(argv):
    """Given an argv list, returns one shell-quoted command string."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class Result:
    def __init__(self, status, stdout, stderr):
        self.status, self.stdout, self.stderr = status, stdout, stderr

    @property
    def ok(self):
        return self.status == 0

    def __repr__(self):
        return f"Result({self.status}, {self.stdout[:60]!r}, {self.stderr[:60]!r})"


class Stream:
    """A running remote command whose stdout is read line by line as it arrives."""

    def __init__(self, channel):
        self.channel = channel
        self._buffer = b""
        self.stderr = b""

    def lines(self):
        """Returns the complete stdout lines that arrived since the last call (never blocks)."""
        while self.channel.recv_ready():
            self._buffer += self.channel.recv(65536)
        while self.channel.recv_stderr_ready():
            self.stderr += self.channel.recv_stderr(65536)
        if b"\n" not in self._buffer:
            return []
        *complete, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    @property
    def finished(self):
        return self.channel.exit_status_ready() and not self.channel.recv_ready()

    @property
    def lost(self):
        transport = self.channel.get_transport()
        return self.channel.closed and not self.channel.exit_status_ready() or not (transport and transport.is_active())

    def close(self):
        try:
            self.channel.close()
        except Exception:  # closing a channel on a dead transport may raise anything paramiko has
            pass


class Connection:
    """One SSH connection to a host (HostSettings); reconnects when the transport died."""

    def __init__(self, host, connect_timeout_s=10.0, log=None, addresses=None):
        self.host = host
        self.addresses = addresses  # an AddressBook: the kept address when the name does not resolve
        self.connect_timeout_s = connect_timeout_s
        self.log = log
        self.client = None
        self.connects = 0
        self._lock = threading.Lock()

    @property
    def where(self):
        return f"{self.host.name} ({self.host.ssh_user}@{self.host.address}:{self.host.ssh_port})"

    def connect(self):
        """Returns the live paramiko transport, connecting (again) if needed. Raises RemoteError."""
        import paramiko

        with self._lock:
            if self.client is not None:
                transport = self.client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self.client.close()
                self.client = None
            client = paramiko.SSHClient()
            files = []  # the key and known_hosts, open and checked: paramiko reads these very files
            try:
                return self._connect(client, files)
            except BaseException:
                client.close()
                raise
            finally:
                for fd in files:
                    os.close(fd)

    def _open_trusted(self, path, what, private, files):
        """Opens a file that decides trust (checked on the open descriptor); returns a path to it."""
        try:
            fd = permissions.open_checked(path, what, private=private)
        except permissions.UnsafeFile as err:
            raise UnsafeTrustFile(f"{self.where}: refusing to connect: {err}") from None
        files.append(fd)
        return permissions.fd_path(fd)

    def _connect(self, client, files):
        import paramiko

        try:
            client.load_host_keys(self._open_trusted(self.host.known_hosts_file, "hgs's known_hosts", False, files))
        except FileNotFoundError:
            pass  # no pinned keys yet: the connect below refuses with a clear message
        except (OSError, paramiko.SSHException) as err:
            raise RemoteError(f"{self.where}: cannot read {self.host.known_hosts_file}: {err}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            key_file = self._open_trusted(self.host.ssh_key_file, "the SSH key", True, files)
        except FileNotFoundError:
            raise RemoteError(f"{self.where}: the key file {self.host.ssh_key_file} does not exist") from None
        except OSError as err:
            raise RemoteError(f"{self.where}: cannot read the key file {self.host.ssh_key_file} "
                              f"({err.strerror or err})") from None
        try:
            client.connect(
                self.host.address, port=self.host.ssh_port, username=self.host.ssh_user, sock=self._socket(),
                key_filename=key_file, passphrase=self.host.ssh_key_passphrase,
                look_for_keys=False, allow_agent=False, timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s, auth_timeout=self.connect_timeout_s,
                channel_timeout=self.connect_timeout_s,
            )
        except paramiko.BadHostKeyException as err:
            client.close()
            raise HostKeyError(
                f"{self.where}: the host key CHANGED (now {err.key.get_name()} "
                f"SHA256:{_fingerprint(err.key)}, pinned SHA256:{_fingerprint(err.expected_key)}); refusing to "
                f"connect. If the host was reinstalled, run 'hgs trust {self.host.name} --replace'") from None
        except paramiko.SSHException as err:
            client.close()
            text = str(err)
            if "not found in known_hosts" in text:
                raise HostKeyError(f"{self.where}: the host key is not pinned in {self.host.known_hosts_file}; "
                                   f"run 'hgs trust {self.host.name}'") from None
            if isinstance(err, paramiko.AuthenticationException):
                raise RemoteError(f"{self.where}: authentication with {self.host.ssh_key_file} failed; is its "
                                  "public key in the host's authorized_keys?") from None
            raise RemoteError(f"{self.where}: SSH failed: {text}") from None
        except FileNotFoundError:
            client.close()
            raise RemoteError(f"{self.where}: the key file {self.host.ssh_key_file} does not exist") from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise RemoteError(f"{self.where}: no answer within {self.connect_timeout_s:g} s") from None
        except (OSError, EOFError) as err:
            client.close()
            raise RemoteError(f"{self.where}: cannot connect ({getattr(err, 'strerror', None) or err})") from None
        transport = client.get_transport()
        transport.set_keepalive(15)
        self.client = client
        self.connects += 1
        if self.log:
            self.log.debug("ssh: connected to %s (connection #%d)", self.where, self.connects)
        return transport

    def _socket(self):
        """Returns a socket connected to the host's address from the AddressBook (its last known
        address when the name does not resolve), or None to let paramiko connect by the address
        as configured. The host key is still looked up under the configured name."""
        from hgs.addresses import LookupFailed

        if self.addresses is None:
            return None
        try:
            address = self.addresses.address(self.host.address)
        except LookupFailed as err:
            raise RemoteError(f"{self.where}: {err}") from None
        if address == self.host.address:
            return None
        return socket.create_connection((address, self.host.ssh_port), timeout=self.connect_timeout_s)

    def _open_channel(self):
        import paramiko

        transport = self.connect()
        try:
            return transport.open_session(timeout=self.connect_timeout_s)
        except (paramiko.SSHException, EOFError, OSError) as err:
            raise ConnectionLost(f"{self.where}: cannot open a channel ({err})") from None

    def start(self, command, stdin=None):
        """Starts ``command`` (a string hgs built) in a new channel, feeding it ``stdin`` (text)
        if given; returns a Stream. A long script goes on stdin: an SSH exec request is one packet."""
        import paramiko

        channel = self._open_channel()
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode("utf-8"))
                channel.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as err:
            channel.close()
            raise ConnectionLost(f"{self.where}: cannot start a command ({err})") from None
        return Stream(channel)

    def run(self, command, timeout_s, poll_s=0.01):
        """Runs ``command`` and returns Result; raises RemoteTimeout past ``timeout_s``, ConnectionLost."""
        stream = self.start(command)
        channel = stream.channel
        deadline = time.monotonic() + timeout_s
        out, err = [], []
        try:
            while True:
                while channel.recv_ready():
                    out.append(channel.recv(65536))
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    status = channel.recv_exit_status()
                    break
                transport = channel.get_transport()
                if channel.closed or transport is None or not transport.is_active():
                    raise ConnectionLost(f"{self.where}: the connection dropped while running a command")
                if time.monotonic() >= deadline:
                    raise RemoteTimeout(f"{self.where}: no result within {timeout_s:g} s")
                time.sleep(poll_s)
        finally:
            stream.close()
        return Result(status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"))

    def close(self):
        with self._lock:
            if self.client is not None:
                self.client.close()
                self.client = None


def _fingerprint(key):
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
