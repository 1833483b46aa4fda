"""The state file's content and the run records, as types: what hgs shut down, what it must
bring back, and what each run did.

``State`` is the whole state file (phase, snapshot, the VMs still to start); ``Snapshot`` what
an outage flow saw running: ``PoolRecord``, ``HostRecord`` and ``VmRecord`` by uuid.
``RunRecord`` is one file of the run history. Each has ``to_dict()`` and ``from_dict()``.

Reading is forgiving record by record, so one damaged record never stops a restore or a
status: a record that is not a JSON object is dropped and named; a field of the wrong type
takes its default and is named (a number written as text is read as the number); a field
that is missing (a file of an older schema) takes its default. What cannot be read at all (a
state that is not an object, an unknown phase, a snapshot that is not an object) raises
StateError; a file of a newer schema raises NewerStateError. Nothing else is ever raised.

Schemas: 1 is the file hgs wrote before it carried ``"schema"`` (it said ``"version": 1``);
2 adds ``"schema"`` and writes every field of every record.
"""

import dataclasses
import math
from dataclasses import dataclass, field, fields

from hgs.errors import NewerStateError, StateError

SCHEMA_VERSION = 2
RUN_SCHEMA_VERSION = 1

IDLE, SHUTTING_DOWN, SITE_DOWN, RESTORING = "idle", "shutting_down", "site_down", "restoring"
PHASES = (IDLE, SHUTTING_DOWN, SITE_DOWN, RESTORING)
ACTIONS = ("shutdown", "suspend", "shed")


# -- reading one field -------------------------------------------------------------------------

def _json_type(value):
    return type(value).__name__


def _shown(value):
    """Returns the start of ``value``'s repr for a message (an int too long to show: its type)."""
    try:
        return f"{value!r:.40}"
    except ValueError:  # an int past Python's digit limit
        return f"a long {_json_type(value)}"


def _text(value):
    return (value, True) if isinstance(value, str) else (None, False)


def _flag(value):
    return (value, True) if isinstance(value, bool) else (None, False)


def _whole(value):
    """A whole number: an int, a finite float (cut), or text that holds an int."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, True
    if isinstance(value, float):
        return (int(value), True) if math.isfinite(value) else (None, False)
    if isinstance(value, str):
        try:
            return int(value.strip()), True
        except ValueError:
            return None, False
    return None, False


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, False
    return (value, True) if math.isfinite(value) else (None, False)


def _texts(value):
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value), True
    return None, False


def _action(value):
    return (value, True) if value in ACTIONS else (None, False)


WHAT = {_text: "text", _flag: "true or false", _whole: "a number", _seconds: "a number",
        _texts: "a list of texts", _action: f"one of {', '.join(ACTIONS)}"}


def _kind(read, from_key=False):
    """Marks a dataclass field with its reader; ``from_key``: missing or unreadable, it is the record's key."""
    return {"read": read, "from_key": from_key}


def _default(f):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _read_fields(chosen, key, data, where, damaged):
    """Returns the keyword arguments of the dataclass fields ``chosen`` read from the dict
    ``data``; a field of the wrong type takes its default and is named in ``damaged`` as
    '<where>: <field> <value> is not ...'."""
    values = {}
    for f in chosen:
        read, from_key = f.metadata["read"], f.metadata["from_key"]
        default = str(key) if from_key else _default(f)
        raw = data.get(f.name)
        if raw is None:
            values[f.name] = default  # missing (an older schema) or null: the default, silently
            continue
        value, ok = read(raw)
        if not ok and not from_key:
            damaged.append(f"{where}: {f.name} {_shown(raw)} is not {WHAT[read]} (taken as {default!r})")
        values[f.name] = value if ok else default
    return values


def _records(cls, part, data, damaged):
    """Returns {key: cls} read from ``data`` (the JSON object of one part of a snapshot); a
    record that is not an object is dropped and named in ``damaged``."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        damaged.append(f"{part}: a JSON {_json_type(data)}")
        return {}
    out = {}
    for key, record in data.items():
        if not isinstance(record, dict):
            damaged.append(f"{part} {key}: a JSON {_json_type(record)}")
            continue
        out[str(key)] = cls(**_read_fields(fields(cls), key, record, f"{part} {key}", damaged))
    return out


_FIELD_NAMES = {}  # dataclass -> its field names (asked at every save: thousands of records)
_SCALARS = (str, int, float, bool, type(None))


def _asdict(record):
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    return {name: _plain(getattr(record, name)) for name in names}


def _plain(value):
    if type(value) in _SCALARS:
        return value
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    return value


# -- the snapshot ---------------------------------------------------------------------------------

@dataclass
class VmRecord:
    """A VM the outage flow found running: what the restore starts (or resumes)."""

    uuid: str = field(default="", metadata=_kind(_text, from_key=True))
    name: str = field(default="", metadata=_kind(_text, from_key=True))
    pool: str | None = field(default=None, metadata=_kind(_text))
    host: str | None = field(default=None, metadata=_kind(_text))  # the host uuid it ran on
    order: int = field(default=0, metadata=_kind(_whole))  # xe 'order': shutdown highest first, start lowest first
    start_delay: int = field(default=0, metadata=_kind(_whole))  # seconds after its start group, from xe
    tools: bool = field(default=True, metadata=_kind(_flag))  # guest tools: without, it is forced at once
    action: str = field(default="shutdown", metadata=_kind(_action))  # VMS: shed, suspend or shutdown
    shed: bool = field(default=False, metadata=_kind(_flag))  # shed already (before the main shutdown)

    def to_dict(self):
        return _asdict(self)

    @classmethod
    def running(cls, vm, pool_uuid, action="shutdown"):
        """Returns the record of ``vm`` (a VmInfo the hypervisor listed running in ``pool_uuid``)."""
        return cls(vm.uuid, vm.name, pool_uuid, vm.resident_on, vm.order, vm.start_delay, vm.tools, action)

    @classmethod
    def from_dict(cls, key, data, damaged=None):
        """Given a record's key and its JSON value, returns the record, or None (named in
        ``damaged``) when it is not an object."""
        found = _records(cls, "vms", {key: data}, [] if damaged is None else damaged)
        return found.get(str(key))


@dataclass
class HostRecord:
    """A host of a pool the outage flow took down."""

    name: str = field(default="", metadata=_kind(_text, from_key=True))  # its name-label
    config: str | None = field(default=None, metadata=_kind(_text))  # the config HOSTS entry it matched
    pool: str | None = field(default=None, metadata=_kind(_text))
    master: bool = field(default=False, metadata=_kind(_flag))
    address: str | None = field(default=None, metadata=_kind(_text))

    def to_dict(self):
        return _asdict(self)


@dataclass
class PoolRecord:
    """A pool the outage flow took down, and what its HA was."""

    master: str | None = field(default=None, metadata=_kind(_text))  # the master's host uuid
    ha_was_enabled: bool = field(default=False, metadata=_kind(_flag))  # the restore turns HA back on
    ha_srs: list = field(default_factory=list, metadata=_kind(_texts))  # HA's heartbeat SRs, [] when unknown
    ha_srs_unknown: str | None = field(default=None, metadata=_kind(_text))  # why the SRs are unknown
    executor: str | None = field(default=None, metadata=_kind(_text))  # the config host that ran its commands

    def to_dict(self):
        return _asdict(self)


@dataclass
class Snapshot:
    """What an outage flow saw running, taken before any change."""

    taken: str | None = None  # local time, ISO 8601
    run_id: str | None = None  # the run that took it
    pools: dict = field(default_factory=dict)  # pool uuid -> PoolRecord
    hosts: dict = field(default_factory=dict)  # host uuid -> HostRecord
    vms: dict = field(default_factory=dict)  # vm uuid -> VmRecord

    def to_dict(self):
        return {"taken": self.taken, "run_id": self.run_id,
                "pools": {key: record.to_dict() for key, record in self.pools.items()},
                "hosts": {key: record.to_dict() for key, record in self.hosts.items()},
                "vms": {key: record.to_dict() for key, record in self.vms.items()}}

    def merged(self, new):
        """Returns this snapshot (an earlier outage's, not yet restored) with what ``new`` found
        added: every record this one holds is kept; a pool's HA was on when either says so, and
        the heartbeat SRs this one knew stand unless it knew none."""
        pools = {key: dataclasses.replace(record, ha_srs=list(record.ha_srs)) for key, record in self.pools.items()}
        hosts, vms = dict(self.hosts), dict(self.vms)
        for mine, theirs in ((pools, new.pools), (hosts, new.hosts), (vms, new.vms)):
            for key, record in theirs.items():
                mine.setdefault(key, record)
        for key, pool in new.pools.items():
            kept = pools[key]
            kept.ha_was_enabled = kept.ha_was_enabled or pool.ha_was_enabled
            if not kept.ha_srs:
                kept.ha_srs = list(pool.ha_srs)
        return Snapshot(self.taken if self.taken is not None else new.taken,
                        self.run_id if self.run_id is not None else new.run_id, pools, hosts, vms)

    @classmethod
    def from_dict(cls, data, damaged=None):
        """Given a snapshot's JSON object, returns the Snapshot; a damaged record is left out and
        named in ``damaged`` (a list), a damaged field takes its default. Raises StateError when
        ``data`` is not an object."""
        damaged = [] if damaged is None else damaged
        if not isinstance(data, dict):
            raise StateError(f"a snapshot must be a JSON object, not a JSON {_json_type(data)}")
        found = {}
        for name in ("taken", "run_id"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                damaged.append(f"snapshot: {name} {_shown(value)} is not text (left out)")
                value = None
            found[name] = value
        return cls(found["taken"], found["run_id"], _records(PoolRecord, "pools", data.get("pools"), damaged),
                   _records(HostRecord, "hosts", data.get("hosts"), damaged),
                   _records(VmRecord, "vms", data.get("vms"), damaged))


# -- the state file ---------------------------------------------------------------------------------

@dataclass
class State:
    """The whole state file: where the site is, and what hgs must bring back."""

    phase: str = IDLE
    snapshot: Snapshot | None = None
    restore_pending: list | None = None  # vm uuids the restore has still to start; None: all
    updated: str | None = None  # when it was last written, local time
    damaged: list = field(default_factory=list, compare=False)  # records left out when it was read

    def to_dict(self):
        """Returns the JSON object of the current schema."""
        return {"schema": SCHEMA_VERSION, "phase": self.phase,
                "snapshot": None if self.snapshot is None else self.snapshot.to_dict(),
                "restore_pending": None if self.restore_pending is None else list(self.restore_pending),
                "updated": self.updated}

    @classmethod
    def from_dict(cls, data, source="the state file"):
        """Given the JSON value of a state file of any schema up to SCHEMA_VERSION (or the dict
        StateFile.load() returns), returns the State (damaged records left out, named in
        ``damaged``). Raises NewerStateError for a newer schema, StateError for a state hgs did
        not write; ``source`` names it in the message."""
        data = migrate(data, source)
        noted = data.get("damaged_records")  # what StateFile.load() left out, in the dict it gives the flows
        problems = [] if data.get("phase") in PHASES else [f"phase {_shown(data.get('phase'))}"]
        snapshot = data.get("snapshot")
        if snapshot is not None and not isinstance(snapshot, dict):
            problems.append(f"a snapshot that is a JSON {_json_type(snapshot)}")
        if problems:
            raise StateError(f"{source} is damaged ({', '.join(problems)})")
        damaged, ok = _texts(noted)
        damaged = damaged if ok else []
        pending, ok = _texts(data.get("restore_pending"))
        if not ok and data.get("restore_pending") is not None:
            damaged.append(f"restore_pending {_shown(data.get('restore_pending'))} is not a list of VM uuids "
                           "(every VM of the snapshot is started)")
        updated, _ = _text(data.get("updated"))
        return cls(data["phase"], None if snapshot is None else Snapshot.from_dict(snapshot, damaged),
                   pending, updated, damaged)


def migrate(data, source="the state file"):
    """Given the JSON value of a state file, returns it as a dict of the current schema; raises
    NewerStateError for a newer schema, StateError when it is not a state hgs wrote."""
    if not isinstance(data, dict):
        raise StateError(f"{source} is not one this hgs wrote (a JSON {_json_type(data)}, not an object)")
    schema = data.get("schema")
    if schema is None:  # schema 1 did not say so: it said "version": 1
        if type(data.get("version")) is not int or data["version"] != 1:
            raise StateError(f"{source} is not one this hgs wrote (no schema, version {_shown(data.get('version'))})")
        schema = 1
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise StateError(f"{source} is not one this hgs wrote (schema {_shown(schema)})")
    if schema > SCHEMA_VERSION:
        raise NewerStateError(schema, SCHEMA_VERSION, source)
    data = dict(data)
    for older in range(schema, SCHEMA_VERSION):
        data = MIGRATIONS[older](data)
    return data


def _from_schema_1(data):
    """Schema 1 -> 2: 'version' becomes 'schema'; the fields it lacks take their defaults when read."""
    data.pop("version", None)
    return dict(data, schema=2)


MIGRATIONS = {1: _from_schema_1}  # schema N -> N + 1


# -- the run history ----------------------------------------------------------------------------------

@dataclass
class RunItem:
    """One VM or host in a run record: its name, what happened to it, how long it took."""

    name: str = field(default="?", metadata=_kind(_text))
    outcome: str = field(default="", metadata=_kind(_text))
    seconds: float | None = field(default=None, metadata=_kind(_seconds))
    detail: str = field(default="", metadata=_kind(_text))

    def to_dict(self):
        return _asdict(self)


@dataclass
class RunRecord:
    """One run of a flow command, as the run history keeps it."""

    id: str | None = field(default=None, metadata=_kind(_text))
    command: str | None = field(default=None, metadata=_kind(_text))
    kind: str | None = field(default=None, metadata=_kind(_text))
    started: float | None = field(default=None, metadata=_kind(_seconds))  # Unix time
    ended: float | None = field(default=None, metadata=_kind(_seconds))
    result: str | None = field(default=None, metadata=_kind(_text))
    failed: bool = field(default=False, metadata=_kind(_flag))
    facts: list = field(default_factory=list, metadata=_kind(_texts))
    notes: list = field(default_factory=list, metadata=_kind(_texts))
    vms: list = field(default_factory=list, metadata=_kind(None))  # RunItem
    hosts: list = field(default_factory=list, metadata=_kind(None))  # RunItem

    def to_dict(self):
        return dict(_asdict(self), schema=RUN_SCHEMA_VERSION)

    @classmethod
    def from_report(cls, report, command, ended):
        """Returns the record of ``report`` (a flows.report.Report) run by ``command``."""
        return cls(report.run_id, command, report.kind, report.started, ended, report.result, report.failed,
                   list(report.lines), list(report.notes), [RunItem(**vars(item)) for item in report.vms],
                   [RunItem(**vars(item)) for item in report.hosts])

    @classmethod
    def from_dict(cls, data):
        """Given a run record's JSON value, returns the RunRecord: a field of the wrong type takes
        its default, an item that is not an object is left out. Raises StateError when ``data``
        is not an object."""
        if not isinstance(data, dict):
            raise StateError(f"a run record must be a JSON object, not a JSON {_json_type(data)}")
        ignored = []
        simple = [f for f in fields(cls) if f.metadata["read"] is not None]
        values = _read_fields(simple, None, data, "run", ignored)
        for part in ("vms", "hosts"):
            items = data.get(part)
            values[part] = [RunItem(**_read_fields(fields(RunItem), None, item, part, ignored))
                            for item in (items if isinstance(items, list) else []) if isinstance(item, dict)]
        return cls(**values)

