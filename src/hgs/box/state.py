"""The state file: what hgs shut down and what it must bring back.

One JSON file in the state dir, written atomically (temp file, fsync, rename) with mode
0600 before every step that depends on it. Its ``phase`` says where the site is:
idle, shutting_down (an outage flow is past its point of no return), site_down (everything
hgs stopped is down), restoring. The snapshot is never overwritten by a half-down site: a
second outage flow merges what it finds running into the snapshot it already has.
"""

import json
import os
import time

from hgs.errors import StateError
from hgs.box.files import write_atomic

VERSION = 1
IDLE, SHUTTING_DOWN, SITE_DOWN, RESTORING = "idle", "shutting_down", "site_down", "restoring"
PHASES = (IDLE, SHUTTING_DOWN, SITE_DOWN, RESTORING)


def empty():
    return {"version": VERSION, "phase": IDLE, "snapshot": None, "updated": None}


def clean_snapshot(snapshot):
    """Given a snapshot read from the file, returns (snapshot, dropped): its pools, hosts and VMs
    as objects of objects, each VM with a text name and a whole-number order; a record of
    another shape is dropped and named in ``dropped``, so one damaged record never stops a
    restore or a status."""
    clean, dropped = dict(snapshot), []
    for part in ("pools", "hosts", "vms"):
        records = snapshot.get(part)
        if not isinstance(records, dict):
            if records is not None:
                dropped.append(f"{part}: a JSON {type(records).__name__}")
            clean[part] = {}
            continue
        clean[part] = {}
        for key, record in records.items():
            if not isinstance(record, dict):
                dropped.append(f"{part} {key}: a JSON {type(record).__name__}")
                continue
            record = dict(record)
            if part == "vms":
                if not isinstance(record.get("name"), str):
                    record["name"] = str(key)
                record.setdefault("uuid", key)
                order = record.get("order", 0)
                if isinstance(order, bool) or not isinstance(order, (int, float)):
                    try:
                        order = int(str(order).strip())
                    except ValueError:
                        dropped.append(f"vms {key}: order {order!r} is not a number (taken as 0)")
                        order = 0
                record["order"] = int(order)
            clean[part][key] = record
    return clean, dropped


class StateFile:
    """The state file in ``state_dir`` (created 0700 on first write)."""

    def __init__(self, state_dir):
        self.dir = str(state_dir)
        self.path = os.path.join(self.dir, "state.json")
        self.broken = False  # load() found a file hgs did not write: the next save keeps it aside first

    def load(self):
        """Returns the state dict (an empty one when there is none); raises StateError."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return empty()
        except ValueError as err:  # not JSON (or not UTF-8)
            self.broken = True
            raise StateError(f"cannot read the state file {self.path}: {err}") from None
        except OSError as err:
            raise StateError(f"cannot read the state file {self.path}: {err.strerror or err}") from None
        if not isinstance(data, dict):
            self.broken = True
            raise StateError(f"the state file {self.path} is not one this hgs wrote (a JSON {type(data).__name__}, "
                             "not an object)")
        if data.get("version") != VERSION:
            self.broken = True
            raise StateError(f"the state file {self.path} is not one this hgs wrote (version {data.get('version')!r})")
        problems = [] if data.get("phase") in PHASES else [f"phase {data.get('phase')!r}"]
        snapshot = data.get("snapshot")
        if snapshot is not None and not isinstance(snapshot, dict):
            problems.append(f"a snapshot that is a JSON {type(snapshot).__name__}")
        if problems:
            self.broken = True
            raise StateError(f"the state file {self.path} is damaged ({', '.join(problems)})")
        if snapshot is not None:
            data["snapshot"], dropped = clean_snapshot(snapshot)
            if dropped:
                data["damaged_records"] = dropped
        return data

    def save(self, data):
        """Writes ``data`` atomically; raises StateError (e.g. disk full, read-only)."""
        data = dict(data, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            if self.broken:  # kept for a person to read: what it held may matter to the restore
                self.broken = False
                try:
                    os.replace(self.path, f"{self.path}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
                except FileNotFoundError:
                    pass
            write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))
        except OSError as err:
            raise StateError(f"cannot write the state file {self.path}: {err.strerror or err}") from None
        return data
