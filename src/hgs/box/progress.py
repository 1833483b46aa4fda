"""What the running flow has done so far, for `hgs status`: one small JSON file in the state dir.

The flow's report calls ``write`` after each VM or host outcome and at the end (see
commands/_flow.watch). It is rewritten atomically (temp file, rename) and never fsynced:
it is for people watching, the state file stays the record. Failing to write it is ignored.
"""

import json
import os
import threading
import time

from hgs.box.files import write_atomic

NAME = "progress.json"


def write(state_dir, report, pid=None):
    """Writes what ``report`` (a flows.report.Report) says so far; never raises."""
    data = {"run_id": report.run_id, "kind": report.kind, "pid": pid or os.getpid(), "started": report.started,
            "updated": time.time(), "result": report.result, "failed": report.failed,
            "vms": [vars(item) for item in report.vms], "hosts": [vars(item) for item in report.hosts]}
    try:
        os.makedirs(str(state_dir), mode=0o700, exist_ok=True)
        write_atomic(os.path.join(str(state_dir), NAME), json.dumps(data), fsync=False)
    except OSError:
        return None
    return data


class Writer:
    """``report.on_change`` for a flow: writes the progress at most every ``every_s`` seconds
    (a 5000-VM outage reports 5000 outcomes; rewriting the file for each would cost more than
    the flow), the last change always within ``every_s``, and at once when the run ends."""

    def __init__(self, state_dir, every_s=0.5):
        self.state_dir, self.every_s = state_dir, every_s
        self.last = 0.0
        self.timer = None
        self.lock = threading.Lock()

    def __call__(self, report):
        with self.lock:
            wait_s = self.last + self.every_s - time.monotonic()
            if report.result == "running" and wait_s > 0:
                if self.timer is None:  # the latest state goes out when the interval is over
                    self.timer = threading.Timer(wait_s, self._later, (report,))
                    self.timer.daemon = True
                    self.timer.start()
                return
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.last = time.monotonic()
        write(self.state_dir, report)

    def _later(self, report):
        with self.lock:
            self.timer = None
            self.last = time.monotonic()
        write(self.state_dir, report)


def read(state_dir):
    """Returns the last progress written, or None."""
    try:
        with open(os.path.join(str(state_dir), NAME)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
