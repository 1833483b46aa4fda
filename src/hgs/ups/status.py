"""One normalised UPS status for both daemons.

apcupsd and NUT say the same things in different words (ONBATT vs OB, TIMELEFT in minutes vs
battery.runtime in seconds). The flows only ever see ``UpsStatus``.
"""

import enum
import math
import re
from dataclasses import dataclass

from hgs.errors import UpsError


class UpsState(enum.Enum):
    ON_LINE = "on line"
    ON_BATTERY = "on battery"
    LOW_BATTERY = "low battery"
    FORCED_SHUTDOWN = "forced shutdown"
    COMM_LOST = "comm lost"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class UpsStatus:
    state: UpsState
    charge_pct: float | None
    runtime_s: int | None
    raw: str  # the daemon's own status words, for the log
    daemon: str
    address: str

    @property
    def on_mains(self):
        return self.state is UpsState.ON_LINE

    @property
    def on_battery(self):
        """True when the load runs from the battery (low battery and forced shutdown included)."""
        return self.state in (UpsState.ON_BATTERY, UpsState.LOW_BATTERY, UpsState.FORCED_SHUTDOWN)

    def as_dict(self):
        return {
            "daemon": self.daemon,
            "address": self.address,
            "state": self.state.name.lower(),
            "state_text": self.state.value,
            "charge_pct": self.charge_pct,
            "runtime_s": self.runtime_s,
            "raw_status": self.raw,
        }


_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z]*)")


def leading_number(text):
    """Given '87.0 Percent', returns (87.0, 'percent'); (None, '') when there is no number."""
    match = _NUMBER.match(text or "")
    if not match:
        return None, ""
    return float(match.group(1)), match.group(2).lower()


# apcupsd's STATFLAG bits (apcupsd's statflag.h) as NUT's status words for the same thing
STATFLAG_WORDS = ((0x200, "FSD"), (0x100, "COMMLOST"), (0x10, "OB"), (0x40, "LB"), (0x08, "OL"))
APCUPSD_WORDS = {"COMMLOST": "COMMLOST", "ONBATT": "OB", "LOWBATT": "LB", "ONLINE": "OL"}


def _state_of(words):
    """Given NUT-style status words (FSD, COMMLOST, OB, LB, OL), returns the UpsState: a forced
    shutdown wins (it is a latch), then lost contact, then on battery (low or not), then on line."""
    if "FSD" in words:
        return UpsState.FORCED_SHUTDOWN
    if "COMMLOST" in words:
        return UpsState.COMM_LOST
    if "OB" in words:
        return UpsState.LOW_BATTERY if "LB" in words else UpsState.ON_BATTERY
    if "OL" in words:
        return UpsState.ON_LINE
    return UpsState.UNKNOWN


def apcupsd_state(status_text, statflag_text=None):
    """Given apcupsd's STATUS (and STATFLAG) values, returns the UpsState; whole tokens only."""
    tokens = (status_text or "").split()
    if tokens:
        words = {APCUPSD_WORDS[t] for t in tokens if t in APCUPSD_WORDS}
        return _state_of(words | ({"FSD"} if tokens[:2] == ["SHUTTING", "DOWN"] else set()))
    if not statflag_text:  # no STATUS: the STATFLAG bits say the same
        return UpsState.UNKNOWN
    try:
        flags = int(statflag_text.split()[0], 16)
    except (ValueError, IndexError):
        return UpsState.UNKNOWN
    return _state_of({word for bit, word in STATFLAG_WORDS if flags & bit})


def nut_state(status_text):
    """Given NUT's ups.status value, returns the UpsState; FSD is a latch and wins."""
    return _state_of(set((status_text or "").split()) - {"COMMLOST"})  # not a NUT word


def _usable(value, name, text, daemon, address):
    """Returns ``value`` when it is a finite number (or None); raises UpsError naming the field."""
    if value is not None and not math.isfinite(value):
        raise UpsError(f"{daemon} at {address}: {name} {text.strip()[:40]!r} is not a number hgs can use")
    return value


def from_apcupsd(fields, address):
    """Given the NIS records as a dict, returns UpsStatus (TIMELEFT minutes -> seconds).

    Raises UpsError for a value no UPS reports (e.g. a 400-digit number)."""
    status_text = fields.get("STATUS", "").strip()
    state = apcupsd_state(status_text, fields.get("STATFLAG"))
    charge, _ = leading_number(fields.get("BCHARGE"))
    _usable(charge, "BCHARGE", fields.get("BCHARGE", ""), "apcupsd", address)
    runtime, unit = leading_number(fields.get("TIMELEFT"))
    if runtime is not None:
        if unit.startswith("sec"):
            pass
        elif unit.startswith("hour"):
            runtime *= 3600
        else:  # apcupsd reports minutes
            runtime *= 60
        runtime = int(round(_usable(runtime, "TIMELEFT", fields.get("TIMELEFT", ""), "apcupsd", address)))
    return UpsStatus(state, charge, runtime, status_text or fields.get("STATFLAG", ""), "apcupsd", address)


def from_nut(variables, address):
    """Given upsd's variables as a dict, returns UpsStatus (battery.runtime is in seconds).

    Raises UpsError for a value no UPS reports (e.g. a 400-digit number)."""
    status_text = variables.get("ups.status", "").strip()
    charge, _ = leading_number(variables.get("battery.charge"))
    _usable(charge, "battery.charge", variables.get("battery.charge", ""), "nut", address)
    runtime, _ = leading_number(variables.get("battery.runtime"))
    _usable(runtime, "battery.runtime", variables.get("battery.runtime", ""), "nut", address)
    return UpsStatus(nut_state(status_text), charge, None if runtime is None else int(round(runtime)),
                     status_text, "nut", address)
