"""Time, injected: the flows ask a clock, so tests and dry runs need not wait."""

import time


class Clock:
    """Real time: ``now()`` is monotonic seconds, ``sleep(s)`` sleeps."""

    def now(self):
        return time.monotonic()

    def sleep(self, seconds):
        if seconds > 0:
            time.sleep(seconds)

    def wall(self):
        return time.time()


class InstantClock(Clock):
    """A clock whose sleeps pass at once (a dry run treats waits as done)."""

    def __init__(self):
        self.offset = 0.0

    def now(self):
        return time.monotonic() + self.offset

    def sleep(self, seconds):
        if seconds > 0:
            self.offset += seconds

    def wall(self):
        return time.time() + self.offset
