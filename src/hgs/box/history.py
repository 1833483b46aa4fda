"""Run history: one JSON record per flow run in ``<state_dir>/runs/``, the newest KEEP kept.

A record says what ran, when, how it ended and what happened to each VM and host, so
`hgs status` and `hgs selftest` can tell the last runs without reading the log.
"""

import json
import os

from hgs.box.files import write_atomic

KEEP = 50


def folder(state_dir):
    return os.path.join(str(state_dir), "runs")


def record(state_dir, report, command, ended):
    """Writes the record of ``report`` (a flows.report.Report); prunes old ones. Best effort."""
    data = {
        "id": report.run_id, "command": command, "kind": report.kind, "started": report.started, "ended": ended,
        "result": report.result, "failed": report.failed, "facts": report.lines, "notes": report.notes,
        "vms": [vars(item) for item in report.vms], "hosts": [vars(item) for item in report.hosts],
    }
    where = folder(state_dir)
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
        write_atomic(os.path.join(where, f"{report.run_id}.json"), json.dumps(data, indent=1), fsync=False)
        names = sorted(n for n in os.listdir(where) if n.endswith(".json"))
        for name in names[:-KEEP]:
            os.unlink(os.path.join(where, name))
    except OSError:
        return None
    return data


def recent(state_dir, count=5):
    """Returns the newest ``count`` records, newest first (unreadable ones skipped)."""
    where = folder(state_dir)
    try:
        names = sorted((n for n in os.listdir(where) if n.endswith(".json")), reverse=True)
    except OSError:
        return []
    out = []
    for name in names:
        try:
            with open(os.path.join(where, name)) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue  # not a record hgs wrote
        for key in ("started", "ended"):
            if isinstance(record.get(key), bool) or not isinstance(record.get(key), (int, float, type(None))):
                record[key] = None
        for key in ("vms", "hosts"):
            items = record.get(key)
            record[key] = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        out.append(record)
        if len(out) >= count:
            break
    return out
