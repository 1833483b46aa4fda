"""The events the hooks received, so a running flow hears of them between its own UPS polls.

Each hook appends '<unix time> <event>' to ``<lock_dir>/events`` before anything else and
returns; ``last`` tells a flow when a hook last got an event, so an outage flow still
confirming hears of a power return (even a flap shorter than its poll interval), and a
restore of a new power failure.
"""

import os
import time

MAX_BYTES = 64 * 1024


def path(lock_dir):
    return os.path.join(str(lock_dir), "events")


def record(lock_dir, event, now=None):
    """Appends one event line (best effort: a hook must never fail on its own bookkeeping)."""
    try:
        os.makedirs(str(lock_dir), mode=0o700, exist_ok=True)
        target = path(lock_dir)
        try:
            if os.path.getsize(target) > MAX_BYTES:  # keep the tail only; old events matter to no one
                with open(target, "rb") as handle:
                    handle.seek(-MAX_BYTES // 2, os.SEEK_END)
                    tail = handle.read().split(b"\n", 1)[-1]
                tmp = target + ".tmp"
                with open(tmp, "wb") as handle:
                    handle.write(tail)
                os.replace(tmp, target)
        except FileNotFoundError:
            pass
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{time.time() if now is None else now:.3f} {event}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def last(lock_dir, kind, start):
    """Returns the wall time of the latest ``kind`` event at or after ``start``, or None."""
    try:
        with open(path(lock_dir)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        stamp, _, name = line.partition(" ")
        try:
            when = float(stamp)
        except ValueError:
            continue
        if when < start:
            return None
        if name == kind:
            return when
    return None
