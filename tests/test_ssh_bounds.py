"""Every remote step has a deadline, and escalation cuts it: hgs's SSH client (hgs.net.ssh)
against a real SSH server (paramiko's server side, in this process, on loopback) that
misbehaves the way a hung dom0 does: it keeps TCP alive and never answers one step."""

import socket
import threading
import time
from types import SimpleNamespace

import paramiko
import pytest

from hgs.config import HostSettings
from hgs.errors import NotStarted
from hgs.net.ssh import Connection, ConnectionLost, OutputTooLarge, RemoteError, RemoteInterrupted, RemoteTimeout

SLACK_S = 1.5  # a bound holds when the call returns by its deadline plus this (a loaded 2-core box)


class _Behaviour(paramiko.ServerInterface):
    """Accepts our key; then does what ``mode`` says at the step it names."""

    def __init__(self, server):
        self.server = server

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL if key == self.server.client_key else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if self.server.mode == "no_channel":
            self.server.release.wait()  # never answers the channel open (the transport thread hangs)
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        mode = self.server.mode
        if mode == "no_exec_answer":
            self.server.release.wait()  # never answers the exec request: TCP stays up, nothing comes back
            return False
        if mode == "endless_output":
            threading.Thread(target=self._flood, args=(channel,), daemon=True).start()
        elif mode == "never_reads_stdin":
            pass  # accepts the command and never reads its input (nor ends)
        elif mode == "silent_command":
            pass  # the command runs for ever and says nothing
        elif mode == "echo":
            threading.Thread(target=self._echo, args=(channel, command), daemon=True).start()
        return True

    def _flood(self, channel):
        time.sleep(0.1)  # after the exec request's answer is out
        chunk = b"y" * 65536
        try:
            while not channel.closed and not self.server.release.is_set():
                channel.sendall(chunk)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def _echo(self, channel, command):
        time.sleep(0.1)  # after the exec request's answer is out
        channel.sendall(b"ran: " + command + b"\n")
        channel.send_exit_status(0)
        channel.close()


class MisbehavingServer:
    """An SSH server on 127.0.0.1 whose ``mode`` picks the step it never answers."""

    def __init__(self, tmp_path, mode):
        self.mode = mode
        self.release = threading.Event()
        self.host_key = paramiko.RSAKey.generate(2048)
        client_key = paramiko.RSAKey.generate(2048)
        self.client_key = paramiko.RSAKey(data=client_key.asbytes())
        self.key_file = tmp_path / "id_rsa"
        client_key.write_private_key_file(str(self.key_file))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.known_hosts = tmp_path / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n")
        self.transports, self.sockets = [], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)
            if self.mode == "no_banner":
                continue  # TCP accepted; not one byte of SSH ever
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Behaviour(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def host(self):
        return HostSettings(name="dom0", address="127.0.0.1", ssh_port=self.port, ssh_user="root",
                            ssh_key_file=str(self.key_file), ssh_key_passphrase=None,
                            known_hosts_file=str(self.known_hosts))

    def close(self):
        self.release.set()
        self.listener.close()
        for transport in self.transports:
            transport.close()
        for conn in self.sockets:
            conn.close()


@pytest.fixture
def server(tmp_path):
    made = []

    def make(mode):
        made.append(MisbehavingServer(tmp_path, mode))
        return made[-1]

    yield make
    for s in made:
        s.close()


def timed(call):
    start = time.monotonic()
    try:
        call()
    except RemoteError as err:
        return time.monotonic() - start, err
    raise AssertionError("the call returned instead of failing")


def test_a_well_behaved_server_answers(server):
    connection = Connection(server("echo").host(), connect_timeout_s=5)
    result = connection.run("xe host-list", timeout_s=5)
    connection.close()
    assert result.ok and result.stdout == "ran: xe host-list\n"


def test_an_exec_request_never_answered_ends_at_the_call_deadline(server):
    connection = Connection(server("no_exec_answer").host(), connect_timeout_s=5)
    took, err = timed(lambda: connection.run("xe vm-list", timeout_s=2))
    connection.close()
    assert isinstance(err, RemoteTimeout), err
    assert 1.5 <= took <= 2 + SLACK_S
    assert "no answer to the exec request in time" in str(err)


def test_escalation_cuts_a_hung_exec_request_at_once(server):
    told = threading.Event()
    connection = Connection(server("no_exec_answer").host(), connect_timeout_s=5,
                            interrupt=lambda: told.is_set() and "hgs doshutdown")
    threading.Timer(0.5, told.set).start()
    took, err = timed(lambda: connection.run("xe vm-list", timeout_s=60))
    connection.close()
    assert isinstance(err, RemoteInterrupted), err
    assert took < 0.5 + SLACK_S
    assert "hgs doshutdown" in str(err)


def test_a_batch_start_never_answered_ends_at_its_deadline(server):
    connection = Connection(server("no_exec_answer").host(), connect_timeout_s=5)
    took, err = timed(lambda: connection.start("sh -s", stdin="xe vm-start uuid=x\n", timeout_s=2))
    connection.close()
    assert isinstance(err, RemoteTimeout) and took <= 2 + SLACK_S


def test_endless_output_is_cut_with_a_clear_error_within_the_deadline(server):
    connection = Connection(server("endless_output").host(), connect_timeout_s=5)
    took, err = timed(lambda: connection.run("xe vm-list", timeout_s=20, max_bytes=4 * 1024 * 1024))
    connection.close()
    assert isinstance(err, OutputTooLarge), err
    assert "more than 4 MiB of output" in str(err) and took < 20


def test_endless_output_in_a_batch_stream_ends_it_as_lost(server):
    connection = Connection(server("endless_output").host(), connect_timeout_s=5)
    stream = connection.start("sh -s", stdin="", timeout_s=5)
    stream.max_bytes = 1024 * 1024
    deadline = time.monotonic() + 10
    while not stream.lost and time.monotonic() < deadline:
        stream.lines()
        time.sleep(0.01)
    connection.close()
    assert stream.lost and "of output: cut" in stream.error


def test_a_command_that_never_ends_ends_at_the_deadline(server):
    connection = Connection(server("silent_command").host(), connect_timeout_s=5)
    took, err = timed(lambda: connection.run("xe vm-shutdown uuid=x", timeout_s=1.5))
    connection.close()
    assert isinstance(err, RemoteTimeout) and 1.4 <= took <= 1.5 + SLACK_S


def test_input_the_host_never_reads_ends_at_the_deadline(server):
    connection = Connection(server("never_reads_stdin").host(), connect_timeout_s=5)
    script = "x" * (6 * 1024 * 1024)  # past the SSH window: the write blocks until the host reads
    took, err = timed(lambda: connection.start("sh -s", stdin=script, timeout_s=2))
    connection.close()
    assert isinstance(err, RemoteTimeout), err
    assert "input was not taken in time" in str(err) and took <= 2 + SLACK_S


def test_a_channel_open_never_answered_ends_at_its_deadline(server):
    connection = Connection(server("no_channel").host(), connect_timeout_s=1.5)
    took, err = timed(lambda: connection.run("xe host-list", timeout_s=30))
    connection.close()
    assert isinstance(err, NotStarted) and "never started" in str(err), err  # nothing ran: never "sent"
    assert took <= 1.5 + 1.0 + SLACK_S


class _RefusingTransport:
    """A connection whose channel opens fail with ``error``; ``active``: is it still up?
    ``silent``: the host never answers (paramiko waits the whole timeout, then raises)."""

    def __init__(self, error, active=True, silent=False):
        self.error, self.active, self.silent = error, active, silent

    def open_session(self, timeout=None):
        if self.silent:
            time.sleep(timeout)
        raise self.error

    def is_active(self):
        return self.active

    def close(self):
        self.active = False


def test_a_failed_channel_open_is_a_refusal_only_while_the_connection_is_up():
    """paramiko keeps one refusal reason per connection: a thread refused at the same moment as
    another gets a bare "Unable to open channel." on a connection that is fine (asked again);
    no answer in time, or a connection that is gone, ends the call. Nothing ran either way."""
    host = HostSettings(name="xen1", address="127.0.0.1", ssh_port=22, ssh_user="root", ssh_key_file="/k",
                        ssh_key_passphrase=None, known_hosts_file="/kh")
    connection = Connection(host, connect_timeout_s=0.2)
    deadline = time.monotonic() + 5
    for error in (paramiko.ChannelException(1, "Administratively prohibited"),
                  paramiko.SSHException("Unable to open channel.")):
        channel, refused = connection._try_session(_RefusingTransport(error), deadline)
        assert channel is None and refused is error
    for transport in (_RefusingTransport(paramiko.SSHException("Timeout opening channel."), silent=True),
                      _RefusingTransport(paramiko.SSHException("Unable to open channel."), active=False),
                      _RefusingTransport(EOFError(), active=False)):
        with pytest.raises(NotStarted):
            connection._try_session(transport, deadline)


def test_a_host_shutdown_that_never_started_is_never_reported_sent():
    import logging

    from hgs.hypervisors.xen.backend import Hypervisor

    log = logging.getLogger("test.ssh")

    class Failing:
        def __init__(self, error):
            self.error = error

        def run(self, command, timeout_s, **kwargs):
            raise self.error

    host = SimpleNamespace(name="xen1", xe_path="/opt/xensource/bin/xe")
    uuid = "0b1c2d3e-0000-4000-8000-0000000000aa"
    with pytest.raises(NotStarted):
        Hypervisor(host, Failing(NotStarted("xen1: cannot open a channel")), 5, log).shutdown_host(uuid)
    dropped = Hypervisor(host, Failing(ConnectionLost("xen1: the connection dropped")), 5, log)
    assert dropped.shutdown_host(uuid) == "sent, session dropped"  # it may have run: the host is going down


def test_a_port_that_accepts_and_never_speaks_ssh_ends_at_the_connect_deadline(server):
    connection = Connection(server("no_banner").host(), connect_timeout_s=1.5)
    took, err = timed(lambda: connection.run("xe host-list", timeout_s=30))
    connection.close()
    assert type(err) is RemoteError and "no SSH answer within 1.5 s" in str(err)
    assert took <= 1.5 + SLACK_S


def test_escalation_cuts_a_silent_handshake(server):
    told = threading.Event()
    connection = Connection(server("no_banner").host(), connect_timeout_s=30,
                            interrupt=lambda: told.is_set() and "the power failed again")
    threading.Timer(0.5, told.set).start()
    took, err = timed(connection.connect)
    connection.close()
    assert isinstance(err, RemoteInterrupted) and took < 0.5 + SLACK_S


def test_the_outage_flows_escalation_cut_ends_the_hung_call_and_lets_the_next_one_run(server):
    from hgs.commands.onbattery import EscalationCut

    told = threading.Event()
    srv = server("silent_command")
    connection = Connection(srv.host(), connect_timeout_s=5, interrupt=EscalationCut(told.is_set))
    threading.Timer(0.5, told.set).start()
    took, err = timed(lambda: connection.run("xe host-shutdown uuid=x", timeout_s=60))
    assert isinstance(err, RemoteInterrupted) and took < 0.5 + SLACK_S, (took, err)
    srv.mode = "echo"  # the hurried flow's next call (the master's host-shutdown) must still go out
    result = connection.run("xe host-shutdown uuid=y", timeout_s=10)
    connection.close()
    assert result.ok and "host-shutdown" in result.stdout, result
