"""The NIS and upsd readers: against the simulated UPS, and against hostile servers.

Whatever a server does (close mid-reply, stall, trickle, garbage, a huge reply), the read
ends within its one deadline with a clear UpsError, never a hang.
"""

import re
import struct
import time

import pytest

from hgs.errors import UpsError
from hgs.ups import nis, nut
from hgs.ups.status import UpsState
from harness import free_port, timed

DEADLINE_S = 1.0
SLACK_S = 0.5


@pytest.mark.parametrize("state,expected", [
    ("online", UpsState.ON_LINE), ("onbatt", UpsState.ON_BATTERY),
    ("lowbatt", UpsState.LOW_BATTERY), ("commlost", UpsState.COMM_LOST),
])
def test_both_readers_read_the_simulated_ups(sim_ups, state, expected):
    sim_ups.set_state(state)
    apc = nis.read_status("127.0.0.1", sim_ups.nis_port)
    ups = nut.read_status("127.0.0.1", sim_ups.upsd_port, "simups")
    assert apc.state is expected and ups.state is expected
    if state != "commlost":
        assert 99 <= apc.charge_pct <= 100 and 1700 <= apc.runtime_s <= 1800
        assert 99 <= ups.charge_pct <= 100 and 1700 <= ups.runtime_s <= 1800


def test_a_refused_connection_is_a_clear_error():
    port = free_port()
    for read in (lambda: nis.read_status("127.0.0.1", port, DEADLINE_S),
                 lambda: nut.read_status("127.0.0.1", port, "ups", DEADLINE_S)):
        with pytest.raises(UpsError, match="cannot connect.*is the daemon running"):
            read()


def _nis_reply(lines):
    return b"".join(struct.pack(">H", len(line)) + line for line in lines)


GOOD_NIS = [b"APC      : 001,003,0080\n", b"STATUS   : ONLINE \n", b"BCHARGE  : 100.0 Percent\n",
            b"END APC  : 2026-11-21 08:00:00 +0000  \n"]


def _after_request(conn):
    conn.recv(64)


NIS_BEHAVIOURS = {
    "closes mid-reply": (lambda c, s: (_after_request(c), c.sendall(_nis_reply(GOOD_NIS[:2])[:-5])), "closed the connection"),
    "never answers": (lambda c, s: (_after_request(c), s.wait(10)), "no complete answer within"),
    "trickles forever": (lambda c, s: (_after_request(c), c.sendall(b"\x00\x40"),
                                       [c.sendall(b"A") or time.sleep(0.05) for _ in range(200)]),
                         "no complete answer within"),
    "sends garbage": (lambda c, s: (_after_request(c), c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"), s.wait(10)),
                      "not apcupsd NIS status"),
    "sends a huge record stream": (lambda c, s: (_after_request(c),
                                                 c.sendall(_nis_reply([b"APC      : x\n"] + [b"X" * 60000] * 10))),
                                   "not apcupsd NIS status|larger than"),
    "sends endless valid records": (lambda c, s: (_after_request(c),
                                                  c.sendall(_nis_reply([b"APC      : 001\n"] + [b"K        : v\n"] * 5000))),
                                    "more than 512 records"),
    "no final empty record": (lambda c, s: (_after_request(c), c.sendall(_nis_reply(GOOD_NIS)), s.wait(10)),
                              "no complete answer within"),
    "wrong first record": (lambda c, s: (_after_request(c), c.sendall(_nis_reply(GOOD_NIS[1:]) + b"\x00\x00")),
                           "expected 'APC'"),
}


@pytest.mark.parametrize("name", list(NIS_BEHAVIOURS))
def test_nis_reader_ends_within_its_deadline_against_a_hostile_server(hostile_server, name):
    behaviour, message = NIS_BEHAVIOURS[name]
    port = hostile_server(behaviour)
    result, took = timed(nis.read_status, "127.0.0.1", port, DEADLINE_S)
    assert isinstance(result, UpsError), result
    assert re.search(message, str(result)), str(result)
    assert took < DEADLINE_S + SLACK_S
    assert str(result).startswith(f"apcupsd at 127.0.0.1:{port}: ")


def test_nis_reader_accepts_a_good_reply_from_a_minimal_server(hostile_server):
    port = hostile_server(lambda c, s: (_after_request(c), c.sendall(_nis_reply(GOOD_NIS) + b"\x00\x00"), s.wait(1)))
    status = nis.read_status("127.0.0.1", port, DEADLINE_S)
    assert status.state is UpsState.ON_LINE and status.charge_pct == 100.0


def _line(conn):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


GOOD_LIST = (b'BEGIN LIST VAR u\nVAR u ups.status "OB LB"\nVAR u battery.charge "9"\n'
             b'VAR u battery.runtime "120"\nEND LIST VAR u\n')

UPSD_BEHAVIOURS = {
    "closes mid-reply": (lambda c, s: (_line(c), c.sendall(GOOD_LIST[:40])), "closed the connection"),
    "never answers": (lambda c, s: (_line(c), s.wait(10)), "no complete answer within"),
    "trickles forever": (lambda c, s: (_line(c), [c.sendall(b"V") or time.sleep(0.05) for _ in range(200)]),
                         "no complete answer within"),
    "sends garbage": (lambda c, s: (_line(c), c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n"), s.wait(10)), "not upsd protocol"),
    "sends a huge line": (lambda c, s: (_line(c), c.sendall(b"BEGIN LIST VAR u\n" + b"V" * 400000)), "larger than"),
    "never ends the list": (lambda c, s: (_line(c), c.sendall(b"BEGIN LIST VAR u\n" + b'VAR u x "1"\n' * 3000)),
                            "more than 2048 lines"),
    "unterminated quote": (lambda c, s: (_line(c), c.sendall(b'BEGIN LIST VAR u\nVAR u ups.status "OL\n'), s.wait(10)),
                           "unterminated quoted value"),
    "non-UTF-8 bytes": (lambda c, s: (_line(c), c.sendall(b"\xff\xfe\n"), s.wait(10)), "not upsd protocol"),
    "answers ERR UNKNOWN-UPS": (lambda c, s: (_line(c), c.sendall(b"ERR UNKNOWN-UPS\n"), s.wait(10)),
                                "does not know this UPS name"),
}


@pytest.mark.parametrize("name", list(UPSD_BEHAVIOURS))
def test_upsd_reader_ends_within_its_deadline_against_a_hostile_server(hostile_server, name):
    behaviour, message = UPSD_BEHAVIOURS[name]
    port = hostile_server(behaviour)
    result, took = timed(nut.read_status, "127.0.0.1", port, "u", DEADLINE_S)
    assert isinstance(result, UpsError), result
    assert re.search(message, str(result)), str(result)
    assert took < DEADLINE_S + SLACK_S


def test_upsd_reader_parses_quoted_values_with_escapes(hostile_server):
    reply = b'BEGIN LIST VAR u\nVAR u ups.status "OB LB"\nVAR u ups.model "A \\"quoted\\" \\\\ name"\nEND LIST VAR u\n'
    port = hostile_server(lambda c, s: (_line(c), c.sendall(reply), s.wait(1)))
    variables = nut.read_variables("127.0.0.1", port, "u", DEADLINE_S)
    assert variables == {"ups.status": "OB LB", "ups.model": 'A "quoted" \\ name'}


def test_upsd_data_stale_is_comm_lost_not_an_error(hostile_server):
    port = hostile_server(lambda c, s: (_line(c), c.sendall(b"ERR DATA-STALE\n"), s.wait(1)))
    status = nut.read_status("127.0.0.1", port, "u", DEADLINE_S)
    assert status.state is UpsState.COMM_LOST
