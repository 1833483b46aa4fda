"""Reading the UPS daemons: apcupsd over NIS and NUT over the upsd protocol.

``READERS`` is the one registry of the daemons hgs reads: the configuration checks
UPS['daemon'] and UPS['address'] against it, and the wiring gets its reader from it. A third
daemon is one more entry (its address form, its default port, its read function).
"""

from dataclasses import dataclass
from typing import Callable

from hgs.ups.status import UpsState, UpsStatus


@dataclass(frozen=True)
class Daemon:
    """One UPS daemon hgs can read.

    ``named``: its address names a UPS ('upsname@host[:port]'); otherwise it is 'host[:port]'.
    ``login``: it takes UPS['user'] and UPS['password']. ``read`` is given the UpsSettings and
    returns an UpsStatus, or raises UpsError within UPS['timeout_s']."""

    name: str
    label: str  # how its messages name it: "apcupsd", "NUT"
    default_port: int
    named: bool
    login: bool
    read: Callable

    def address_form(self):
        """Returns the address forms this daemon takes, as the config's messages quote them."""
        return "'upsname@host' or 'upsname@host:port'" if self.named else "'host' or 'host:port'"


def _read_nis(ups):
    from hgs.ups import nis

    return nis.read_status(ups.host, ups.port, timeout_s=ups.timeout_s)


def _read_upsd(ups):
    from hgs.ups import nut

    return nut.read_status(ups.host, ups.port, ups.ups_name, timeout_s=ups.timeout_s, user=ups.user,
                           password=ups.password)


READERS = {
    "apcupsd": Daemon("apcupsd", "apcupsd", 3551, named=False, login=False, read=_read_nis),
    "nut": Daemon("nut", "NUT", 3493, named=True, login=True, read=_read_upsd),
}


def reader_for(ups_settings):
    """Given UpsSettings, returns a zero-argument callable that reads an UpsStatus."""
    daemon = READERS[ups_settings.daemon]
    return lambda: daemon.read(ups_settings)


__all__ = ["READERS", "Daemon", "UpsState", "UpsStatus", "reader_for"]
