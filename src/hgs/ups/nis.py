"""apcupsd's Network Information Server (NIS) protocol, client side.

Every message is a 2-byte big-endian length and that many bytes. The client sends
``status``; the server answers one record per line (``KEY      : value``) and a zero-length
record. hgs reads exact lengths with one deadline, and EOF is an error, never a loop.
"""

import re
import struct

from hgs.errors import UpsError
from hgs.ups import status as ups_status
from hgs.ups.wire import DeadlineConnection, show_address

MAX_RECORDS = 512
MAX_RECORD_BYTES = 1024  # real records are one short line; a larger length is not NIS
_RECORD = re.compile(r"^([A-Z][A-Z0-9 ]{0,15}?)\s*:\s?(.*)$", re.S)


def request(command):
    data = command.encode("ascii")
    return struct.pack(">H", len(data)) + data


def parse_record(raw, conn):
    """Given one record's bytes, returns (key, value); raises UpsError for anything else."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise conn.error("the reply is not apcupsd NIS status (non-ASCII bytes)") from None
    match = _RECORD.match(text.rstrip("\n"))
    if not match:
        raise conn.error(f"the reply is not apcupsd NIS status (record {text[:40]!r})")
    return match.group(1).strip(), match.group(2).strip()


def read_fields(host, port, timeout_s=5.0):
    """Given the NIS address, returns the status records as a dict; raises UpsError."""
    what = f"apcupsd at {show_address(host, port)}"
    with DeadlineConnection(what, host, port, timeout_s) as conn:
        conn.send(request("status"))
        fields = {}
        for index in range(MAX_RECORDS + 1):
            (length,) = struct.unpack(">H", conn.read_exact(2))
            if length == 0:
                break
            if length > MAX_RECORD_BYTES:
                raise conn.error(f"the reply is not apcupsd NIS status (a record of {length} bytes)")
            key, value = parse_record(conn.read_exact(length), conn)
            if index == 0 and key != "APC":
                raise conn.error(f"the reply is not apcupsd NIS status (first record {key!r}, expected 'APC')")
            fields[key] = value
        else:
            raise conn.error(f"more than {MAX_RECORDS} records; not a status reply")
    if not fields:
        raise UpsError(f"{what}: empty status reply (apcupsd is starting or not connected to a UPS)")
    return fields


def read_status(host, port, timeout_s=5.0):
    """Returns the UpsStatus apcupsd reports now; raises UpsError within ``timeout_s``."""
    return ups_status.from_apcupsd(read_fields(host, port, timeout_s), show_address(host, port))
