"""Run history: one JSON record per flow run in ``<state_dir>/runs/``, the newest KEEP kept.

A record (``flows.snapshot.RunRecord``) says what ran, when, how it ended and what happened to
each VM and host, so `hgs status` and `hgs selftest` can tell the last runs without reading
the log.
"""

import json
import os

from hgs.box.files import write_atomic
from hgs.errors import StateError
from hgs.flows.snapshot import RunRecord

KEEP = 50


def folder(state_dir):
    return os.path.join(str(state_dir), "runs")


def record(state_dir, report, command, ended):
    """Writes the record of ``report`` (a flows.report.Report) and prunes old ones; returns the
    RunRecord, or None when it could not be written. Best effort."""
    run = RunRecord.from_report(report, command, ended)
    where = folder(state_dir)
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(where, f"{report.run_id}.json"), json.dumps(run.to_dict(), indent=1), fsync=False)
        names = sorted(n for n in os.listdir(where) if n.endswith(".json"))
        for name in names[:-KEEP]:
            os.unlink(os.path.join(where, name))
    except OSError:
        return None
    return run


def recent(state_dir, count=5):
    """Returns the newest ``count`` RunRecords, newest first (unreadable ones skipped; a field
    of the wrong type reads as its default)."""
    where = folder(state_dir)
    try:
        names = sorted((n for n in os.listdir(where) if n.endswith(".json")), reverse=True)
    except OSError:
        return []
    out = []
    for name in names:
        try:
            with open(os.path.join(where, name)) as handle:
                out.append(RunRecord.from_dict(json.load(handle)))
        except (OSError, ValueError, StateError):  # not a record hgs wrote
            continue
        if len(out) >= count:
            break
    return out
