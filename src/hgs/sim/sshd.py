"""An in-process SSH server for one simulated host (paramiko's server side), on loopback.

It stands where OpenSSH stands in the tests, for the demo and anyone without root: public
key authentication only, at most ``max_sessions`` channels per connection (OpenSSH's
MaxSessions default is 10), and each exec request runs ``/bin/sh -c COMMAND`` with the
host's simulated ``xe`` first on PATH, as sshd does. ``close()`` is the power going off:
the port stops answering and open connections drop.
"""

import logging
import os
import signal
import socket
import subprocess
import threading

import paramiko

# A client that connects and leaves (a banner probe) is normal here, not an error to print.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


class _Interface(paramiko.ServerInterface):
    def __init__(self, server):
        self.server = server
        self.sessions = 0
        self.lock = threading.Lock()

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == self.server.user and any(key == k for k in self.server.authorized_keys):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind != "session":
            return paramiko.OPEN_FAILED_UNKNOWN_CHANNEL_TYPE
        with self.lock:
            if self.sessions >= self.server.max_sessions:
                return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
            self.sessions += 1
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self.server._execute, args=(self, channel, command.decode("utf-8", "replace")),
                         daemon=True).start()
        return True

    def session_ended(self):
        with self.lock:
            self.sessions -= 1


class SimSshServer:
    """Serves SSH for one host on ``address:port`` (0 picks a free port)."""

    def __init__(self, host_key, authorized_keys, bin_dir, address="127.0.0.1", port=0, user="root",
                 max_sessions=10):
        self.host_key = host_key
        self.authorized_keys = list(authorized_keys)
        self.bin_dir = str(bin_dir)
        self.address = address
        self.port = port
        self.user = user
        self.max_sessions = max_sessions
        self.connections = 0
        self._transports = []
        self._processes = set()
        self._lock = threading.Lock()
        self._listener = None
        self.open()

    def open(self):
        """Starts listening (the host is up)."""
        if self._listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def close(self):
        """Stops listening and drops every connection and running command (the host is off)."""
        sock, self._listener = self._listener, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        with self._lock:
            transports, self._transports = self._transports, []
            processes = list(self._processes)
        for transport in transports:
            transport.close()
        for proc in processes:
            _kill_group(proc)

    @property
    def listening(self):
        return self._listener is not None

    def _accept(self, sock):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            with self._lock:
                self._transports.append(transport)
                self.connections += 1
            try:
                transport.start_server(server=_Interface(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def _execute(self, iface, channel, command):
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8"}
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, start_new_session=True)
        except OSError as err:
            channel.sendall_stderr(f"sh: {err}\n".encode())
            channel.send_exit_status(127)
            channel.close()
            iface.session_ended()
            return
        with self._lock:
            self._processes.add(proc)
        threading.Thread(target=_feed, args=(channel, proc.stdin), daemon=True).start()
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, channel.sendall), daemon=True),
                 threading.Thread(target=_pump, args=(proc.stderr, channel.sendall_stderr), daemon=True)]
        for pump in pumps:
            pump.start()
        while proc.poll() is None:
            try:
                proc.wait(0.1)
            except subprocess.TimeoutExpired:
                if channel.closed or not channel.get_transport().is_active():
                    _kill_group(proc)  # the client went away: end the command as a dropped session would
        for pump in pumps:
            pump.join(5)
        with self._lock:
            self._processes.discard(proc)
        try:
            channel.send_exit_status(proc.returncode if proc.returncode >= 0 else 255)
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        iface.session_ended()


def _pump(stream, send):
    try:
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            send(chunk)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        stream.close()


def _feed(channel, stdin):
    """Copies what the client sends on the channel to the command's stdin, until EOF."""
    try:
        while True:
            data = channel.recv(65536)
            if not data:
                break
            stdin.write(data)
            stdin.flush()
    except (OSError, EOFError, paramiko.SSHException, ValueError):
        pass
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
