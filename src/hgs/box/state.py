"""The state file: what hgs shut down and what it must bring back.

One JSON file in the state dir, written atomically (temp file, fsync, rename) with mode
0600 before every step that depends on it. Its content is a ``flows.snapshot.State`` and it
carries ``"schema"``: a file of an older schema is read and migrated; one of a newer schema
(a newer hgs wrote it) or one hgs did not write is refused with a StateError that says so,
and is never lost: the next save keeps it aside (``state.json.newer-<time>`` or
``state.json.broken-<time>``) before writing. Its ``phase`` says where the site is: idle,
shutting_down (an outage flow is past its point of no return), site_down (everything hgs
stopped is down), restoring. The snapshot is never overwritten by a half-down site: a second
outage flow merges what it finds running into the snapshot it already has.
"""

import json
import os
import time

from hgs.box.files import write_atomic
from hgs.errors import NewerStateError, StateError
from hgs.flows.snapshot import IDLE, PHASES, RESTORING, SCHEMA_VERSION, SHUTTING_DOWN, SITE_DOWN, State

VERSION = 1  # what files of schema 1 said instead of "schema" (tests write such files)

__all__ = ["IDLE", "PHASES", "RESTORING", "SCHEMA_VERSION", "SHUTTING_DOWN", "SITE_DOWN", "VERSION", "StateError",
           "NewerStateError", "StateFile"]


class StateFile:
    """The state file in ``state_dir`` (created 0700 on first write)."""

    def __init__(self, state_dir):
        self.dir = str(state_dir)
        self.path = os.path.join(self.dir, "state.json")
        self.keep_aside = None  # read() refused the file: the next save renames it with this word first

    def read(self):
        """Returns the State (an empty one when there is no file); records a damaged record
        leaves out are named in its ``damaged``. Raises StateError (NewerStateError for a file
        of a newer schema)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return State()
        except ValueError as err:  # not JSON (or not UTF-8)
            self.keep_aside = "broken"
            raise StateError(f"cannot read the state file {self.path}: {err}; "
                             f"{self._what_to_do()}") from None
        except OSError as err:
            raise StateError(f"cannot read the state file {self.path}: {err.strerror or err}") from None
        try:
            return State.from_dict(data, f"the state file {self.path}")
        except NewerStateError:
            self.keep_aside = "newer"
            raise
        except StateError as err:
            self.keep_aside = "broken"
            raise StateError(f"{err}; {self._what_to_do()}") from None

    def _what_to_do(self):
        return (f"if the site is up, move it aside; an outage flow keeps it aside as {self.path}.broken-<time> "
                "and takes a new snapshot")

    def load(self):
        """Returns the state as a dict of the current schema (an empty one when there is none),
        with ``damaged_records`` naming the records left out, if any; raises StateError."""
        state = self.read()
        data = state.to_dict()
        if state.damaged:
            data["damaged_records"] = list(state.damaged)
        return data

    def save(self, data):
        """Writes ``data`` (a State, or its dict) atomically, in the current schema; returns what
        was written, as a dict. Raises StateError (e.g. disk full, read-only)."""
        state = data if isinstance(data, State) else State.from_dict(dict(data, schema=SCHEMA_VERSION),
                                                                     "the state to write")
        state.updated = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        written = state.to_dict()
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            if self.keep_aside:  # kept for a person to read: what it held may matter to the restore
                word, self.keep_aside = self.keep_aside, None
                try:
                    os.replace(self.path, f"{self.path}.{word}-{time.strftime('%Y%m%d-%H%M%S')}")
                except FileNotFoundError:
                    pass
            # compact: the C encoder (an indented dump is pure Python: ten times slower at 5000 VMs)
            write_atomic(self.path, json.dumps(written, sort_keys=True, separators=(",", ":")) + "\n")
        except OSError as err:
            raise StateError(f"cannot write the state file {self.path}: {err.strerror or err}") from None
        return written
