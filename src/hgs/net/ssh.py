"""SSH to a host: one connection, many channels, hgs's own deadline on every command.

Host keys are pinned (hgs's known_hosts file, RejectPolicy): an unknown or changed key is a
clear, fatal error for that host. Authentication is by key only.

Every remote step has its own deadline: the TCP connect and the SSH handshake
(``connect_timeout_s``), opening a channel, the exec request and writing stdin, and reading
the result (the call's ``timeout_s``; paramiko's own timeout is per read, and its exec request
waits with none). A blocking paramiko call runs under a watchdog that closes its channel (or
socket) when the deadline passes or ``interrupt()`` says the flow must stop, so nothing waits
past its bound: a dom0 that keeps TCP alive and never answers ends in RemoteTimeout. Output
is capped per call (``MAX_OUTPUT_BYTES``): past it, OutputTooLarge. ``run`` drains stdout and
stderr while waiting, so a chatty command cannot deadlock. ``start`` returns a ``Stream``
whose output lines are read as they come, for a batch of parallel xe calls in one channel.
"""

import errno
import logging
import os
import select
import shlex
import socket
import threading
import time

from hgs.box import permissions
from hgs.errors import (
    ChannelRefused, ConnectionLost, HostKeyError, NotStarted, OutputTooLarge, RemoteError, RemoteInterrupted, RemoteTimeout,
    UnsafeTrustFile)

# paramiko logs failures itself; hgs reports them as RemoteError, so its own lines are not wanted on stderr.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


MAX_OUTPUT_BYTES = 8 * 1024 * 1024  # per call: the largest xe list hgs reads (5000 VMs) is about 2.5 MiB
CHANNEL_RETRY_S = 0.05  # a channel the host refused is asked for again this often
EXTRA_CONNECTIONS = 3  # when the host refuses a channel (sshd's MaxSessions), up to this many more connections
EXTRA_MIN_S = 1.0  # an extra connection is not tried for a call with less time than this left
EXTRA_AFTER_S = 0.2  # a new extra connection is made for a call refused this long (a burst's sessions end sooner)
SHELL = "sh -s"  # a shell reading its script from stdin (batches, warmed-up shells)
ENDED_WAIT_S = 0.02  # a batch whose channel has ended is looked at this often
INTERRUPT_POLL_S = 0.05  # how often a blocked step looks at its deadline and at interrupt()


class _Watchdog:
    """Runs ``cut()`` once when ``deadline`` (monotonic) passes or ``interrupt()`` returns a
    reason, so a blocking paramiko call under it returns; ``fired`` says which, or None."""

    def __init__(self, deadline, interrupt, cut):
        self.deadline, self.interrupt, self.cut = deadline, interrupt, cut
        self.fired = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        return False

    def _watch(self):
        while not self._done.wait(INTERRUPT_POLL_S):
            if time.monotonic() >= self.deadline:
                self.fired = "timeout"
            elif _interrupted(self.interrupt):
                self.fired = "interrupted"
            else:
                continue
            try:
                self.cut()
            except Exception:  # closing a half-dead channel or socket may raise anything: it is closed
                pass
            return


def _interrupted(interrupt):
    """Returns interrupt()'s reason (truthy) or None; a failing check never stops a call."""
    if interrupt is None:
        return None
    try:
        return interrupt() or None
    except Exception:
        return None


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


def wait_any(streams, timeout_s):
    """Blocks until output (or the end of a channel) arrives on any of ``streams``, at most
    ``timeout_s``. A channel that has ended is never waited on with select (it would answer at
    once, forever): when every channel has ended, the wait is a short sleep."""
    timeout_s = max(0.0, timeout_s)
    if any(s.channel.recv_ready() or s.channel.recv_stderr_ready() for s in streams if not s.error):
        return
    live = [s.channel for s in streams if not (s.error or s.channel.closed or s.channel.eof_received)]
    if not live:
        time.sleep(min(timeout_s, ENDED_WAIT_S))
        return
    try:
        select.select(live, [], [], timeout_s)
    except (OSError, ValueError):  # no descriptor to wait on: poll instead
        time.sleep(min(timeout_s, ENDED_WAIT_S))


class Stream:
    """A running remote command whose stdout is read line by line as it arrives."""

    def __init__(self, channel, max_bytes=MAX_OUTPUT_BYTES):
        self.channel = channel
        self._buffer = b""
        self.stderr = b""
        self.received = 0
        self.max_bytes = max_bytes
        self.error = None  # why the stream was cut (too much output), or None

    def lines(self):
        """Returns the complete stdout lines that arrived since the last call (never blocks).
        Past ``max_bytes`` of output the channel is closed and ``error`` says so (``lost``)."""
        if self.error:
            return []
        while self.channel.recv_ready():
            self._buffer += self._take(self.channel.recv(65536))
        while self.channel.recv_stderr_ready():
            self.stderr += self._take(self.channel.recv_stderr(65536))
        if self.error:
            self.close()
            return []
        if b"\n" not in self._buffer:
            return []
        *complete, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    def _take(self, data):
        self.received += len(data)
        if self.received > self.max_bytes:
            self.error = f"more than {self.max_bytes // (1024 * 1024)} MiB of output: cut"
            return b""
        return data

    @property
    def finished(self):
        return self.channel.exit_status_ready() and not self.channel.recv_ready()

    @property
    def lost(self):
        if self.error:
            return True
        transport = self.channel.get_transport()
        # a closed channel without a real exit status (-1: none came, or a signal) died under its command
        ended_badly = self.channel.closed and (not self.channel.exit_status_ready() or self.channel.exit_status == -1)
        return ended_badly or not (transport and transport.is_active())

    def close(self):
        try:
            self.channel.close()
        except Exception:  # closing a channel on a dead transport may raise anything paramiko has
            pass


class Connection:
    """One SSH connection to a host (HostSettings); reconnects when the transport died.

    ``interrupt`` (settable) is a callable returning a reason (truthy) once the flow must stop
    waiting, e.g. escalation or the power failing during a restore: every blocked step then
    ends at once with RemoteInterrupted.
    """

    def __init__(self, host, connect_timeout_s=10.0, log=None, interrupt=None, addresses=None):
        self.host = host
        self.addresses = addresses  # an AddressBook: the kept address when the name does not resolve
        self.connect_timeout_s = connect_timeout_s
        self.log = log
        self.interrupt = interrupt
        self.client = None
        self.extras = []  # more connections to the host, for channels its sshd refused on the first
        self.extra_connections = EXTRA_CONNECTIONS
        self.extra_connects = 0
        self._extras_lock = threading.Lock()
        self._opening = 0  # extra connections being made (each holds a place in extra_connections)
        self._generation = 0  # close() counts up: an extra made across a close() is closed at once
        self.connects = 0
        self._lock = threading.Lock()
        self._spares = []  # shells waiting for their command on stdin (warm)
        self._spares_lock = threading.Lock()

    @property
    def where(self):
        return f"{self.host.name} ({self.host.ssh_user}@{self.host.address}:{self.host.ssh_port})"

    def connect(self):
        """Returns the live paramiko transport, connecting (again) if needed, within
        ``connect_timeout_s`` (TCP, handshake and authentication together). Raises RemoteError
        (RemoteInterrupted when ``interrupt()`` cut it)."""
        return self._handshake_within(self._connect, time.monotonic() + self.connect_timeout_s)

    def _handshake_within(self, make, deadline):
        """Runs ``make(deadline, watches)`` (a handshake that puts its watchdog in ``watches``);
        returns its transport. Raises RemoteInterrupted when ``interrupt()`` cut it, RemoteError
        'no SSH answer' past the deadline, else make's own RemoteError."""
        watches = []  # the handshake's watchdog, once started
        try:
            return make(deadline, watches)
        except RemoteError as err:
            fired = watches[0].fired if watches else None
            if fired == "interrupted":
                raise RemoteInterrupted(f"{self.where}: connecting was cut short: {self._reason()}") from None
            # paramiko's own banner/auth timeouts end at about the same time, with vaguer words
            if fired == "timeout" or (not isinstance(err, (HostKeyError, RemoteInterrupted))
                                      and time.monotonic() >= deadline - 0.25):
                raise RemoteError(f"{self.where}: no SSH answer within {self.connect_timeout_s:g} s") from None
            raise
        finally:
            for watch in watches:
                watch.__exit__(None, None, None)

    def _reason(self):
        return _interrupted(self.interrupt) or "told to stop"

    def _tcp_connect(self, deadline):
        """Returns a socket connected to the host's SSH port, waiting until ``deadline`` at most and
        no longer than ``interrupt()`` allows; raises socket.timeout, OSError, RemoteInterrupted."""
        last = OSError(f"no address for {self.host.address}")
        for family, kind, proto, _, address in socket.getaddrinfo(self._address(), self.host.ssh_port,
                                                                   type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                code = sock.connect_ex(address)
                while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                    if _interrupted(self.interrupt):
                        raise RemoteInterrupted(f"{self.where}: connecting was cut short: {self._reason()}")
                    _, writable, _ = select.select([], [sock], [], min(INTERRUPT_POLL_S * 2, remaining))
                    if writable:
                        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code in (0, errno.EISCONN):
                    sock.setblocking(True)
                    return sock
                last = OSError(code, os.strerror(code))
            except BaseException:
                sock.close()
                raise
            sock.close()
        raise last

    def _connect(self, deadline, watches):
        with self._lock:
            if self.client is not None:
                transport = self.client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self.client.close()
                self.client = None
            transport = self._new_client(deadline, watches)
            self.client = transport.hgs_client
            self.connects += 1
            if self.log:
                self.log.debug("ssh: connected to %s (connection #%d)", self.where, self.connects)
            return transport

    def _new_client(self, deadline, watches):
        """Connects a new paramiko client; returns its transport (``.hgs_client``: the client)."""
        import paramiko

        client = paramiko.SSHClient()
        files = []  # the key and known_hosts, open and checked: paramiko reads these very files
        try:
            transport = self._handshake(client, files, deadline, watches)
        except BaseException:
            client.close()
            raise
        finally:
            for fd in files:
                os.close(fd)
        transport.hgs_client = client
        return transport

    def _open_trusted(self, path, what, private, files):
        """Opens a file that decides trust (checked on the open descriptor); returns a path to it."""
        try:
            fd = permissions.open_checked(path, what, private=private)
        except permissions.UnsafeFile as err:
            raise UnsafeTrustFile(f"{self.where}: refusing to connect: {err}") from None
        files.append(fd)
        return permissions.fd_path(fd)

    def _address(self):
        """The address to connect to: the configured one, or the AddressBook's last known address
        of the configured name when it does not resolve. Raises RemoteError."""
        from hgs.net.addresses import LookupFailed

        if self.addresses is None:
            return self.host.address
        try:
            return self.addresses.address(self.host.address)
        except LookupFailed as err:
            raise RemoteError(f"{self.where}: {err}") from None

    def _handshake(self, client, files, deadline, watches):
        """Connects ``client`` (under the connection's lock); returns the transport."""
        import paramiko

        try:
            client.load_host_keys(self._open_trusted(self.host.known_hosts_file, "hgs's known_hosts", False,
                                                     files))
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
            sock = self._tcp_connect(deadline)
            watches.append(_Watchdog(deadline, self.interrupt, lambda: (_shut(sock), client.close())).__enter__())
            client.connect(
                self.host.address, port=self.host.ssh_port, username=self.host.ssh_user,
                key_filename=key_file, passphrase=self.host.ssh_key_passphrase,
                look_for_keys=False, allow_agent=False, timeout=self.connect_timeout_s,
                banner_timeout=self.connect_timeout_s, auth_timeout=self.connect_timeout_s,
                channel_timeout=self.connect_timeout_s, sock=sock,
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
        watches.pop().__exit__(None, None, None)
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            client.close()
            raise RemoteError(f"{self.where}: the connection dropped while it was made")
        transport.set_keepalive(15)
        return transport

    def _open_channel(self, deadline, spare=False):
        """Returns a new session channel on the connection, or, when the host refuses one there
        (sshd's MaxSessions counts per connection), on one of up to ``extra_connections`` more
        connections. Refused everywhere, it asks again as the host's other sessions end, until
        ``deadline``. A ``spare`` (a shell readied ahead) is only asked for once, on the connection
        itself. Raises ChannelRefused, NotStarted, RemoteInterrupted."""
        transport = self.connect()
        first_refused = None
        while True:
            channel, refused = self._try_session(transport, deadline)
            if channel is not None:
                return channel
            first_refused = first_refused or time.monotonic()
            if not spare:
                # the extra connections there are, at once; a new one only when the refusal lasts
                # (the sessions of a burst of calls end within milliseconds; a handshake takes longer)
                channel = self._overflow_session(deadline, time.monotonic() - first_refused >= EXTRA_AFTER_S)
                if channel is not None:
                    return channel
            # the command never started: try again as the host's other sessions end, until the deadline
            if spare or time.monotonic() + CHANNEL_RETRY_S >= deadline:
                raise ChannelRefused(f"{self.where}: the host refused a new channel ({refused}; too many at "
                                     "once for its sshd's MaxSessions?)")
            if _interrupted(self.interrupt):
                raise RemoteInterrupted(f"{self.where}: opening a channel was cut short: {self._reason()}")
            time.sleep(CHANNEL_RETRY_S)

    def _try_session(self, transport, deadline):
        """Returns (channel, None), or (None, the refusal) when the host refused it on ``transport``.
        Raises NotStarted when that connection failed or the host did not answer, RemoteInterrupted.
        Either way no command ran."""
        import paramiko

        timeout_s = max(0.1, min(self.connect_timeout_s, deadline - time.monotonic()))
        began = time.monotonic()
        with _Watchdog(began + timeout_s + 1.0, self.interrupt, transport.close) as watch:
            try:
                return transport.open_session(timeout=timeout_s), None
            except paramiko.ChannelException as err:  # refused, not lost: sshd's MaxSessions, say
                return None, err
            except (paramiko.SSHException, EOFError, OSError) as err:
                if watch.fired == "interrupted":
                    raise RemoteInterrupted(f"{self.where}: opening a channel was cut short: "
                                            f"{self._reason()}") from None
                if isinstance(err, paramiko.SSHException) and time.monotonic() - began < timeout_s \
                        and watch.fired is None and transport.is_active():
                    # the host answered in time on a connection that is fine: a refusal whose reason
                    # another thread's open took (paramiko keeps one per connection: "Unable to open channel.")
                    return None, err
                raise NotStarted(f"{self.where}: cannot open a channel ({err}); the command never started") \
                    from None

    def _overflow_session(self, deadline, new):
        """Returns a channel on an extra connection (opening one if ``new`` and there is room), or
        None when every extra connection refused one too, none could be made, or too little time
        is left. An extra connection that fails or does not answer is closed and dropped."""
        if deadline - time.monotonic() < EXTRA_MIN_S:
            return None
        with self._extras_lock:
            self.extras = [t for t in self.extras if t.is_active()]
            extras = list(self.extras)
        for transport in extras:
            channel = self._session_on_extra(transport, deadline)
            if channel is not None:
                return channel
        transport = self._new_extra(deadline) if new else None
        return self._session_on_extra(transport, deadline) if transport is not None else None

    def _session_on_extra(self, transport, deadline):
        """Returns a channel on the extra connection ``transport``, or None when it refused one
        (or failed: it is dropped then)."""
        try:
            channel, _ = self._try_session(transport, deadline)
        except NotStarted:
            self._drop_extra(transport)
            return None
        return channel

    def _new_extra(self, deadline):
        """Makes one more connection when there is room; returns its transport, or None."""
        with self._extras_lock:
            if len(self.extras) + self._opening >= self.extra_connections:
                return None
            self._opening += 1
            generation = self._generation
        transport = None
        try:
            transport = self._handshake_within(self._new_client,
                                               min(deadline, time.monotonic() + self.connect_timeout_s))
        except RemoteInterrupted:
            raise
        except RemoteError as err:
            if self.log:
                self.log.debug("ssh: %s refused a channel and no extra connection could be made: %s",
                               self.where, err)
        finally:
            with self._extras_lock:
                self._opening -= 1
                if transport is not None and generation == self._generation:
                    self.extras.append(transport)
                    self.extra_connects += 1
                    number = len(self.extras)
                elif transport is not None:  # closed meanwhile: this connection is not wanted
                    transport.hgs_client.close()
                    transport = None
        if transport is not None and self.log:
            self.log.debug("ssh: %s refused a channel (sshd's MaxSessions?): extra connection #%d opened",
                           self.where, number)
        return transport

    def _drop_extra(self, transport):
        with self._extras_lock:
            if transport in self.extras:
                self.extras.remove(transport)
        transport.hgs_client.close()

    def start(self, command, stdin=None, timeout_s=None):
        """Starts ``command`` (a string hgs built) in a new channel, feeding it ``stdin`` (text)
        if given; returns a Stream. A long script goes on stdin: an SSH exec request is one packet.
        Opening the channel, the exec request and the write end within ``timeout_s`` (default
        ``connect_timeout_s``). Raises RemoteTimeout, RemoteInterrupted, ConnectionLost."""
        deadline = time.monotonic() + (self.connect_timeout_s if timeout_s is None else timeout_s)
        if command == SHELL and stdin is not None:  # a script: a warmed-up shell takes it as it is
            warm = self._feed_spare(stdin, deadline)
            if warm is not None:
                return warm
        return self._start(command, stdin, deadline)

    def warm(self, count):
        """Opens shells that wait for their command on stdin (``sh -s``) until ``count`` are
        ready, so that the next commands (``run``, a script for ``start``) skip the channel open,
        the exec request and the shell start. A shell never given a command runs nothing: EOF
        (the connection closing) ends it. Raises as ``start`` does."""
        with self._spares_lock:
            self._spares = [s for s in self._spares if self._usable(s)]
            missing = count - len(self._spares)
        for _ in range(missing):
            try:  # spares live on the connection itself; when the host refuses one, fewer will do
                spare = self._start(SHELL, None, time.monotonic() + self.connect_timeout_s, spare=True)
            except ChannelRefused:
                return
            with self._spares_lock:
                self._spares.append(spare)

    def _usable(self, stream):
        channel = stream.channel
        transport = channel.get_transport()
        client_transport = self.client.get_transport() if self.client is not None else None
        return not (channel.closed or channel.eof_received or channel.exit_status_ready()) \
            and transport is not None and transport is client_transport and transport.is_active()

    def _feed_spare(self, stdin, deadline):
        """Gives ``stdin`` (then EOF) to a warmed-up shell; returns its Stream, or None when no
        usable one is left (the caller starts a command as usual)."""
        while True:
            with self._spares_lock:
                if not self._spares:
                    return None
                spare = self._spares.pop(0)
            if not self._usable(spare):
                spare.close()
                continue
            try:
                self._write(spare.channel, stdin.encode("utf-8"), deadline)
                return spare
            except (ConnectionLost, RemoteTimeout):  # that shell is gone: try the next, or start one
                spare.close()
            # RemoteInterrupted goes up: the flow was told to stop

    def _start(self, command, stdin, deadline, spare=False):
        import paramiko

        channel = self._open_channel(deadline, spare)
        with _Watchdog(deadline, self.interrupt, channel.close) as watch:
            try:
                channel.exec_command(command)  # paramiko waits for the answer with no timeout at all
            except (paramiko.SSHException, EOFError, OSError) as err:
                channel.close()
                self._raise_cut(watch.fired, "the exec request")
                raise ConnectionLost(f"{self.where}: cannot start a command ({err})") from None
        if watch.fired:  # cut just as the answer came: the channel is closed
            self._raise_cut(watch.fired, "the exec request")
        if stdin is not None:
            self._write(channel, stdin.encode("utf-8"), deadline)
        return Stream(channel)

    def _raise_cut(self, fired, step):
        if fired == "timeout":
            raise RemoteTimeout(f"{self.where}: no answer to {step} in time (host hung?)")
        if fired == "interrupted":
            raise RemoteInterrupted(f"{self.where}: {step} was cut short: {self._reason()}")

    def _write(self, channel, data, deadline):
        """Sends ``data`` then EOF on ``channel`` by ``deadline``; closes it and raises otherwise."""
        channel.settimeout(INTERRUPT_POLL_S * 2)
        try:
            while data:
                if time.monotonic() >= deadline:
                    raise RemoteTimeout(f"{self.where}: the command's input was not taken in time (host hung?)")
                if _interrupted(self.interrupt):
                    raise RemoteInterrupted(f"{self.where}: sending the command's input was cut short: "
                                            f"{self._reason()}")
                try:
                    sent = channel.send(data[:32768])
                except socket.timeout:
                    continue  # the window is full: the host has not read yet
                if sent == 0:
                    raise ConnectionLost(f"{self.where}: the channel closed while sending the command's input")
                data = data[sent:]
            channel.shutdown_write()
        except (EOFError, OSError) as err:
            channel.close()
            raise ConnectionLost(f"{self.where}: cannot send the command's input ({err})") from None
        except RemoteError:
            channel.close()
            raise
        finally:
            channel.settimeout(None)

    def run(self, command, timeout_s, poll_s=0.01, max_bytes=MAX_OUTPUT_BYTES):
        """Runs ``command`` and returns Result. Everything after the connect (channel, exec request,
        output) ends within ``timeout_s``. Raises RemoteTimeout past it, RemoteInterrupted when
        ``interrupt()`` cut it, OutputTooLarge past ``max_bytes`` of output, ConnectionLost."""
        deadline = time.monotonic() + timeout_s
        self.connect()  # bounded by its own deadline
        stream = self._feed_spare(command + "\n", deadline) or self._start(command, None, deadline)
        channel = stream.channel
        out, err = [], []
        received = 0
        next_look = time.monotonic() + INTERRUPT_POLL_S
        try:
            while True:
                while channel.recv_ready():
                    out.append(channel.recv(65536))
                    received += len(out[-1])
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                    received += len(err[-1])
                if received > max_bytes:
                    raise OutputTooLarge(f"{self.where}: the command sent more than {max_bytes // (1024 * 1024)} MiB "
                                         "of output: cut (is this xe?)")
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    status = channel.recv_exit_status()
                    break
                transport = channel.get_transport()
                if channel.closed or transport is None or not transport.is_active():
                    raise ConnectionLost(f"{self.where}: the connection dropped while running a command")
                now = time.monotonic()
                if now >= deadline:
                    raise RemoteTimeout(f"{self.where}: no result within {timeout_s:g} s")
                if now >= next_look:
                    next_look = now + INTERRUPT_POLL_S
                    if _interrupted(self.interrupt):
                        raise RemoteInterrupted(f"{self.where}: waiting for a command was cut short: {self._reason()}")
                time.sleep(poll_s)
        finally:
            stream.close()
        return Result(status, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"))

    def close(self):
        with self._spares_lock:
            self._spares = []  # their channels end with the connection
        with self._lock:
            if self.client is not None:
                self.client.close()
                self.client = None
        with self._extras_lock:
            self._generation += 1
            for transport in self.extras:
                transport.hgs_client.close()
            self.extras = []


def _shut(sock):
    """Ends a socket another thread may be blocked on (shutdown wakes it; close frees it)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _fingerprint(key):
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
