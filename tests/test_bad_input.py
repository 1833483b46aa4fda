"""Bad input, property-based: whatever the UPS daemons, the hypervisor or a config file say,
nothing escapes but hgs's own errors, and nothing from outside reaches a shell unquoted."""

import shlex
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgs import config
from hgs.errors import ConfigError, HgsError, UpsError
from hgs.hypervisors.xen import xe
from hgs.net.ssh import command_line
from hgs.ups import nis, nut

fault = pytest.mark.fault
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class OneShotServer:
    """A loopback server that answers every connection with the same bytes, then closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.reply = b""
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(0.5)
                conn.recv(256)
                conn.sendall(self.reply)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def server():
    s = OneShotServer()
    yield s
    s.close()


@fault("garbage from the apcupsd NIS server (property-based, 150 replies)", "UpsError with a message, or a status")
@FAST
@given(st.binary(max_size=600) | st.lists(st.binary(max_size=80), max_size=8).map(
    lambda rs: b"".join(struct.pack(">H", len(r)) + r for r in rs) + b"\x00\x00"))
def test_nis_reader_survives_any_reply(server, reply):
    server.reply = reply
    try:
        nis.read_status("127.0.0.1", server.port, timeout_s=1.0)
    except UpsError as err:
        assert str(err).startswith("apcupsd at 127.0.0.1:")


@fault("garbage from the NUT upsd server (property-based, 150 replies)", "UpsError with a message, or a status")
@FAST
@given(st.binary(max_size=600) | st.lists(st.text(max_size=60), max_size=8).map(
    lambda ls: ("BEGIN LIST VAR u\n" + "\n".join(ls) + "\nEND LIST VAR u\n").encode("utf-8", "surrogatepass")))
def test_upsd_reader_survives_any_reply(server, reply):
    server.reply = reply
    try:
        nut.read_status("127.0.0.1", server.port, "u", timeout_s=1.0)
    except UpsError as err:
        assert str(err).startswith("NUT upsd at u@127.0.0.1:")


@fault("arbitrary xe output: records, --minimal, errors, batch lines (property-based)", "parsed or ignored, never a crash")
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_xe_parsers_take_any_text(text):
    records = xe.parse_records(text)
    assert all(isinstance(r, dict) for r in records)
    assert isinstance(xe.parse_minimal(text), list)
    error = xe.classify(text)
    assert error.code in set(xe.DESCRIPTIONS) | {"OTHER"} and isinstance(error.summary, str)
    parsed = xe.parse_result_line(text)
    assert parsed is None or xe.UUID.match(parsed[0])


@fault("hostile VM names: quotes, ';', $(...), newlines, very long, non-UTF-8 (property-based)",
       "never reach a command; records stay records")
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_names_never_reach_a_command_and_records_hold(name):
    from hgs.sim.xe import VM_FIELDS, format_records

    vm = {"uuid": "0910b6d8-58d1-5b57-805f-d4716c769e10", "name": name, "power_state": "running",
          "resident_on": None, "order": 0, "start_delay": 0, "tools": True, "control_domain": False,
          "auto_poweron": False, "shutdown_delay": 0}
    state = {"time_scale": 1.0}
    fields = ("uuid", "power-state", "resident-on", "order", "start-delay", "PV-drivers-detected", "name-label")
    text = format_records([[(f"{k} ({VM_FIELDS[k][0]:>3})", VM_FIELDS[k][1](state, vm)) for k in fields]])
    records = xe.parse_records(text)
    # the fields before the name are never spoofed by it (the name is asked for last)
    assert records[0]["uuid"] == vm["uuid"] and records[0]["power-state"] == "running"
    # commands are built from a checked uuid only; a name in the uuid's place is refused
    with pytest.raises(xe.BadUuid):
        xe.vm_shutdown(name)


@fault("any argv quoted for the remote shell (property-based)", "the remote shell sees exactly the argv")
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=60), min_size=1, max_size=6))
def test_command_line_quotes_every_argument(argv):
    assert shlex.split(command_line(argv)) == argv


@fault("any value in any config setting (property-based)", "Settings, or ConfigError naming the setting; exit 2")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["UPS", "TIMINGS", "MAIL", "PATHS", "VMS", "LOGGING", "HOSTS[0]"]),
       key=st.sampled_from(["address", "timeout_s", "to", "mac", "ssh_port", "state_dir", "groups", "syslog",
                            "vm_shutdown_timeout_s", "daemon", "wol_broadcast", "lost_contact", "typo_key"]),
       value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                       st.lists(st.text(max_size=5), max_size=3)))
def test_config_loader_takes_any_value(tmp_path_factory, section, key, value):
    folder = tmp_path_factory.mktemp("cfg")
    ups = {"daemon": "apcupsd", "address": "127.0.0.1"}
    host = {"name": "xen1", "address": "127.0.0.1"}
    sections = {"UPS": ups, "HOSTS[0]": host}
    target = sections.get(section, {})
    target[key] = value
    text = f"UPS = {ups!r}\nHOSTS = [{host!r}]\n"
    if section not in sections:
        text += f"{section} = {target!r}\n"
    path = folder / "config.py"
    path.write_text(text)
    path.chmod(0o600)
    try:
        config.load(path)
    except ConfigError as err:
        assert err.problems and all(p.startswith(("At '", "line ")) for p in err.problems)
    except HgsError as err:  # pragma: no cover - any other hgs error is still a clear message
        assert str(err)
