"""What the running flow has done so far, for `hgs status`: one small JSON file in the state dir.

The flow's report calls ``write`` after each VM or host outcome and at the end (see
commands/_flow.watch). It is rewritten atomically (temp file, rename) and never fsynced:
it is for people watching, the state file stays the record. Failing to write it is ignored.
"""

import json
import os
import tempfile
import time

NAME = "progress.json"


def write(state_dir, report, pid=None):
    """Writes what ``report`` (a flows.report.Report) says so far; never raises."""
    data = {"run_id": report.run_id, "kind": report.kind, "pid": pid or os.getpid(), "started": report.started,
            "updated": time.time(), "result": report.result, "failed": report.failed,
            "vms": [vars(item) for item in report.vms], "hosts": [vars(item) for item in report.hosts]}
    try:
        os.makedirs(str(state_dir), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".progress.", dir=str(state_dir))
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(str(state_dir), NAME))
    except OSError:
        return None
    return data


def read(state_dir):
    """Returns the last progress written, or None."""
    try:
        with open(os.path.join(str(state_dir), NAME)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
