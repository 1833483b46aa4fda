"""NUT's upsd protocol (TCP 3493), client side: the read-only subset hgs needs.

``LIST VAR <ups>`` returns every variable between ``BEGIN LIST VAR`` and ``END LIST VAR``;
values are double-quoted with backslash escapes; errors are ``ERR <CODE>``. One deadline
covers the whole exchange.
"""

from hgs.errors import UpsError
from hgs.ups import status as ups_status
from hgs.ups.wire import DeadlineConnection, show_address

MAX_LINES = 2048

# upsd errors that mean "the daemon is fine but cannot see the UPS": reported as comm lost.
COMM_LOST_ERRORS = {"DATA-STALE", "DRIVER-NOT-CONNECTED"}
ERROR_HINTS = {
    "UNKNOWN-UPS": "upsd does not know this UPS name; check UPS['address'] (upsname@host:port) against ups.conf",
    "ACCESS-DENIED": "upsd refused access; check UPS['user'] / UPS['password'] and upsd.users",
    "INVALID-PASSWORD": "upsd rejected the password",
    "USERNAME-REQUIRED": "upsd wants a user name: set UPS['user'] and UPS['password']",
    "PASSWORD-REQUIRED": "upsd wants a password: set UPS['password']",
}


class StaleData(Exception):
    def __init__(self, code):
        self.code = code


def split_words(line):
    """Given an upsd line, returns its words; quoted words are unescaped. Raises ValueError."""
    words, i, n = [], 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        if line[i] == '"':
            i += 1
            word = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted value")
                c = line[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("dangling backslash")
                    word.append(line[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    word.append(c)
                    i += 1
            words.append("".join(word))
        else:
            start = i
            while i < n and line[i] != " ":
                i += 1
            words.append(line[start:i])
    return words


def quote(value):
    """Returns ``value`` as an upsd quoted string (backslash escapes for '"' and '\\')."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _words(conn, raw):
    try:
        return split_words(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise conn.error(f"the reply is not upsd protocol ({err}: {raw[:60]!r})") from None


def _expect_ok(conn, command):
    conn.send(command.encode("utf-8") + b"\n")
    words = _words(conn, conn.read_line())
    if words[:1] == ["OK"]:
        return
    if words[:1] == ["ERR"] and len(words) > 1:
        raise conn.error(ERROR_HINTS.get(words[1], f"upsd answered ERR {words[1]}"))
    raise conn.error(f"the reply is not upsd protocol (to {command.split()[0]}: {' '.join(words)[:60]!r})")


def read_variables(host, port, ups_name, timeout_s=5.0, user=None, password=None):
    """Returns {name: value} of every variable of ``ups_name``; raises UpsError or StaleData."""
    what = f"NUT upsd at {ups_name}@{show_address(host, port)}"
    with DeadlineConnection(what, host, port, timeout_s) as conn:
        if user is not None:
            _expect_ok(conn, f"USERNAME {quote(user)}")
            _expect_ok(conn, f"PASSWORD {quote(password)}")
        conn.send(f"LIST VAR {ups_name}\n".encode("utf-8"))
        first = _words(conn, conn.read_line())
        if first[:1] == ["ERR"] and len(first) > 1:
            if first[1] in COMM_LOST_ERRORS:
                raise StaleData(first[1])
            raise conn.error(ERROR_HINTS.get(first[1], f"upsd answered ERR {first[1]}"))
        if first != ["BEGIN", "LIST", "VAR", ups_name]:
            raise conn.error(f"the reply is not upsd protocol (expected BEGIN LIST VAR, got {' '.join(first)[:60]!r})")
        variables = {}
        for _ in range(MAX_LINES):
            words = _words(conn, conn.read_line())
            if words == ["END", "LIST", "VAR", ups_name]:
                break
            if len(words) == 4 and words[0] == "VAR" and words[1] == ups_name:
                variables[words[2]] = words[3]
            else:
                raise conn.error(f"the reply is not upsd protocol (line {' '.join(words)[:60]!r})")
        else:
            raise conn.error(f"more than {MAX_LINES} lines; not a variable list")
        try:
            conn.send(b"LOGOUT\n")
        except UpsError:
            pass  # the answer is complete; a failed goodbye changes nothing
    return variables


def read_status(host, port, ups_name, timeout_s=5.0, user=None, password=None):
    """Returns the UpsStatus upsd reports now; a stale driver is 'comm lost'. Raises UpsError."""
    address = f"{ups_name}@{show_address(host, port)}"
    try:
        variables = read_variables(host, port, ups_name, timeout_s, user, password)
    except StaleData as stale:
        return ups_status.UpsStatus(ups_status.UpsState.COMM_LOST, None, None, f"ERR {stale.code}", "nut", address)
    return ups_status.from_nut(variables, address)
