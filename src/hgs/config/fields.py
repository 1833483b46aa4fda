"""Value checks for the configuration loader.

Each check takes a raw value and returns the typed value, or raises ``Invalid`` with a
sentence that names the expected form. They are pure functions so that the loader can
collect every problem of a file at once.
"""

import difflib
import ipaddress
import re


class Invalid(ValueError):
    """A value does not have the expected form; the message says which form."""


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def number(minimum=0.0, allow_equal=False, unit="seconds"):
    """Returns a check for an int or float above ``minimum`` (or equal, if allowed)."""

    relation = "at least" if allow_equal else "greater than"

    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"expected a number of {unit} {relation} {minimum:g}, got {_shown(value)}")
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"expected a finite number of {unit}, got {_shown(value)}")
        if value < minimum or (value == minimum and not allow_equal):
            raise Invalid(f"expected a number of {unit} {relation} {minimum:g}, got {value!r}")
        return float(value)

    return check


def percent(value):
    """Returns a percentage 0..100 as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise Invalid(f"expected a percentage from 0 to 100, got {_shown(value)}")
    return float(value)


def port(value):
    """Returns a TCP/UDP port number 1..65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"expected a port number from 1 to 65535, got {_shown(value)}")
    return value


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid(f"expected True or False, got {_shown(value)}")
    return value


def text(value):
    """Returns a non-empty single-line string."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a non-empty string, got {_shown(value)}")
    if any(c in value for c in "\r\n\x00"):
        raise Invalid(f"expected a single line of text, got {_shown(value)}")
    return value


def secret_problem(value):
    """Given a secret's invalid value, returns what is wrong with it without showing any of it."""
    if isinstance(value, str):
        kind = ("an empty string" if not value.strip() else
                "text with a line break or a NUL byte" if any(c in value for c in "\r\n\x00") else "text")
    else:
        kind = f"a value of type {type(value).__name__}"
    return f"expected a single line of text (or None), got {kind}; the value is not shown: it is a secret"


def optional(check):
    """Returns a check that lets None through and applies ``check`` to anything else."""

    def wrapped(value):
        return None if value is None else check(value)

    return wrapped


def choice(*allowed):
    def check(value):
        if value not in allowed:
            options = ", ".join(repr(a) for a in allowed)
            raise Invalid(f"expected one of {options}, got {_shown(value)}")
        return value

    return check


_HOSTNAME_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def address(value):
    """Returns a host name or IP address (IPv6 without brackets)."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected a host name or IP address, got {_shown(value)}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise Invalid(f"expected a host name or IP address, got {_shown(value)}")
    if all(label.isdigit() for label in labels):
        raise Invalid(f"expected a host name or IP address, got {_shown(value)} (not a valid IPv4 address)")
    return value


def host_port(value, default_port):
    """Splits 'host', 'host:port' or '[v6]:port' into (host, port)."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"expected 'host' or 'host:port', got {_shown(value)}")
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", value)
    if match:
        host, port_text = match.group(1), match.group(2)
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, None
    host = address(host)
    if port_text is None:
        return host, default_port
    if not port_text.isdigit():
        raise Invalid(f"expected 'host:port' with a numeric port, got {_shown(value)}")
    return host, port(int(port_text))


_MAC_FORMS = (
    re.compile(r"^([0-9A-Fa-f]{2})([:-])([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})$"),
    re.compile(r"^([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})$"),
    re.compile(r"^([0-9A-Fa-f]{12})$"),
)


def mac(value):
    """Returns a MAC address as 'aa:bb:cc:dd:ee:ff'; accepts ':', '-', dotted and bare forms."""
    if isinstance(value, str):
        for form in _MAC_FORMS:
            match = form.match(value.strip())
            if match:
                digits = "".join(g for g in match.groups() if g not in (":", "-")).lower()
                return ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    raise Invalid(f"expected a MAC address like 'aa:bb:cc:dd:ee:ff', got {_shown(value)}")


def mail_address(value):
    """Returns a mail address ('user' or 'user@domain') with nothing that could break a header."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._%+=-]+(@[A-Za-z0-9.-]+)?", value):
        raise Invalid(f"expected a mail address like 'admin@example.com' or a local user name, got {_shown(value)}")
    return value


def list_of(check, allow_empty=True):
    """Returns a check for a list (or tuple) whose items all pass ``check``; gives a tuple."""

    def wrapped(value):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise Invalid(f"expected a list, got {_shown(value)}")
        if not value and not allow_empty:
            raise Invalid("expected a list with at least one entry, got an empty list")
        out = []
        for index, item in enumerate(value):
            try:
                out.append(check(item))
            except Invalid as err:
                raise Invalid(f"entry {index}: {err}") from None
        return tuple(out)

    return wrapped


def did_you_mean(name, known):
    """Returns ' (did you mean 'X'?)' for the closest known name, or ''."""
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return f" (did you mean {lowered[name.lower()]!r}?)"
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""
