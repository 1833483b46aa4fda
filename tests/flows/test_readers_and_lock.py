"""What used to escape the readers and the lock as a raw exception, and stop the outage flow
before the hosts: each is now the reader's own error, or a lock the flow runs without."""

import logging
import os
import struct
import threading

import pytest

from hgs.box.lock import SiteLock
from hgs.commands.onbattery import take_lock
from hgs.errors import UpsError
from hgs.ups import nis
from hgs.ups.status import UpsState, from_apcupsd, from_nut
from hgs.ups.wire import DeadlineConnection

HUGE = "9" * 400


@pytest.mark.parametrize("fields", [{"STATUS": "ONBATT", "TIMELEFT": f"{HUGE} Minutes"},
                                    {"STATUS": "ONBATT", "BCHARGE": f"{HUGE}.0 Percent"}])
def test_a_400_digit_apcupsd_field_is_an_ups_error(fields):
    with pytest.raises(UpsError, match=r"apcupsd at 127.0.0.1:3551: (TIMELEFT|BCHARGE) '9{20}.*not a number"):
        from_apcupsd(fields, "127.0.0.1:3551")


@pytest.mark.parametrize("name", ["battery.runtime", "battery.charge"])
def test_a_400_digit_nut_variable_is_an_ups_error(name):
    with pytest.raises(UpsError, match=f"nut at ups@127.0.0.1:3493: {name} .*not a number"):
        from_nut({"ups.status": "OB", name: HUGE}, "ups@127.0.0.1:3493")


def test_sane_values_still_read():
    status = from_apcupsd({"STATUS": "ONBATT", "TIMELEFT": "12.5 Minutes", "BCHARGE": "80.0 Percent"}, "a")
    assert status.state is UpsState.ON_BATTERY and status.runtime_s == 750 and status.charge_pct == 80.0


def _nis_reply(lines):
    return b"".join(struct.pack(">H", len(line)) + line for line in lines) + b"\x00\x00"


def test_the_nis_reader_turns_a_400_digit_timeleft_into_its_own_error(hostile_server):
    reply = _nis_reply([b"APC      : 001,003,0080\n", b"STATUS   : ONBATT \n",
                        b"TIMELEFT : " + HUGE.encode() + b" Minutes\n"])
    port = hostile_server(lambda c, s: (c.recv(64), c.sendall(reply), s.wait(1)))
    with pytest.raises(UpsError, match=f"apcupsd at 127.0.0.1:{port}: TIMELEFT"):
        nis.read_status("127.0.0.1", port, 2.0)


@pytest.mark.parametrize("host,port", [("a" * 300, 3551), ("127.0.0.1", 70000)])
def test_an_address_no_socket_takes_is_an_ups_error(host, port):
    with pytest.raises(UpsError, match="cannot connect"):
        DeadlineConnection("apcupsd at x", host, port, 1.0)


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log():
    logger = logging.getLogger("hgs-locktest")
    handler = Lines()
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.lines = handler.lines
    return logger


def test_a_lock_that_cannot_be_made_never_stops_the_outage_flow(tmp_path, log):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file stands where the lock folder should be (as a full or read-only disk would)
    go_on, code, fault = take_lock(SiteLock(blocker / "lock"), log)
    assert go_on and code is None
    assert "without the site lock" in fault and "cannot create the lock file" in fault
    assert any("WITHOUT the site lock" in line for line in log.lines)


def test_a_held_lock_still_merges_the_event_into_the_running_flow(tmp_path, log):
    holder = SiteLock(tmp_path / "lock")
    assert holder.acquire(kind="outage")
    try:
        assert take_lock(SiteLock(tmp_path / "lock"), log) == (False, 0, None)
    finally:
        holder.release()
    assert take_lock(SiteLock(tmp_path / "lock"), log) == (True, None, None)


def test_a_holder_that_does_not_say_what_it_runs_is_waited_for_never_merged_into(tmp_path, log):
    holder = SiteLock(tmp_path / "lock")
    assert holder.acquire(kind="restore")
    os.truncate(holder.path, 0)  # its kind was never written (a full disk): it may be a restore
    threading.Timer(0.5, holder.release).start()
    assert take_lock(SiteLock(tmp_path / "lock"), log, wait_s=10) == (True, None, None)
    assert any("does not say what it runs" in line for line in log.lines)
