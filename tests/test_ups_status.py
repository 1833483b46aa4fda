"""Normalising the daemons' status words: whole tokens, units, every state."""

import pytest

from hgs.ups.status import UpsState, apcupsd_state, from_apcupsd, from_nut, nut_state


@pytest.mark.parametrize("status,flag,state", [
    ("ONLINE", None, UpsState.ON_LINE),
    ("ONLINE SLAVE", None, UpsState.ON_LINE),
    ("ONBATT", None, UpsState.ON_BATTERY),
    ("ONBATT SLAVE", None, UpsState.ON_BATTERY),
    ("ONBATT LOWBATT", None, UpsState.LOW_BATTERY),
    ("ONLINE LOWBATT", None, UpsState.ON_LINE),
    ("COMMLOST", None, UpsState.COMM_LOST),
    ("SHUTTING DOWN", None, UpsState.FORCED_SHUTDOWN),
    ("ONLINEX", None, UpsState.UNKNOWN),  # a whole token, never a substring
    ("XONBATT", None, UpsState.UNKNOWN),
    ("", "0x05000010", UpsState.ON_BATTERY),
    ("", "0x05000050", UpsState.LOW_BATTERY),
    ("", "0x05000008", UpsState.ON_LINE),
    ("", "0x05000100", UpsState.COMM_LOST),
    ("", "garbage", UpsState.UNKNOWN),
    ("", None, UpsState.UNKNOWN),
])
def test_apcupsd_states(status, flag, state):
    assert apcupsd_state(status, flag) is state


@pytest.mark.parametrize("status,state", [
    ("OL", UpsState.ON_LINE),
    ("OL CHRG", UpsState.ON_LINE),
    ("OB DISCHRG", UpsState.ON_BATTERY),
    ("OB LB", UpsState.LOW_BATTERY),
    ("OB DISCHRG LB", UpsState.LOW_BATTERY),
    ("FSD OB LB", UpsState.FORCED_SHUTDOWN),
    ("FSD OL", UpsState.FORCED_SHUTDOWN),
    ("OL LB", UpsState.ON_LINE),
    ("WAIT", UpsState.UNKNOWN),
    ("OBX", UpsState.UNKNOWN),
    ("LOB", UpsState.UNKNOWN),
    ("", UpsState.UNKNOWN),
])
def test_nut_states(status, state):
    assert nut_state(status) is state


def test_apcupsd_timeleft_minutes_become_seconds():
    status = from_apcupsd({"STATUS": "ONBATT", "BCHARGE": "87.5 Percent", "TIMELEFT": "24.5 Minutes"}, "h:1")
    assert status.charge_pct == 87.5 and status.runtime_s == 1470
    assert status.on_battery and not status.on_mains


def test_apcupsd_older_unit_spellings():
    assert from_apcupsd({"STATUS": "ONLINE", "TIMELEFT": "90 seconds"}, "h:1").runtime_s == 90
    assert from_apcupsd({"STATUS": "ONLINE", "TIMELEFT": "N/A"}, "h:1").runtime_s is None


def test_nut_runtime_is_already_seconds():
    status = from_nut({"ups.status": "OB", "battery.charge": "50", "battery.runtime": "600"}, "u@h:1")
    assert (status.state, status.charge_pct, status.runtime_s) == (UpsState.ON_BATTERY, 50.0, 600)
