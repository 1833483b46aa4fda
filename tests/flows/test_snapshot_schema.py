"""The state file's schema: older files are read, newer or broken ones refused and kept, every
field survives a round trip, and no JSON whatever makes the reading raise anything but
hgs's own error."""

import dataclasses
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowfakes import run_outage, run_restore
from hgs.box.state import StateFile
from hgs.errors import HgsError, NewerStateError, StateError
from hgs.flows.snapshot import (SCHEMA_VERSION, HostRecord, PoolRecord, RunItem, RunRecord, Snapshot, State,
                                VmRecord)

ALL_OFF = {"master": "off", "member1": "off", "member2": "off"}


def _as_schema_1(data):
    """Returns the state dict ``data`` (current schema) as hgs wrote it before the schema: a
    "version" and no "schema", no restore_pending, and the record fields it did not write."""
    old = {"version": 1, "phase": data["phase"], "updated": data["updated"], "snapshot": dict(data["snapshot"])}
    snapshot = old["snapshot"]
    snapshot["vms"] = {u: {k: v for k, v in vm.items() if k != "shed"} for u, vm in snapshot["vms"].items()}
    snapshot["pools"] = {u: {k: v for k, v in pool.items() if k != "ha_srs_unknown"}
                         for u, pool in snapshot["pools"].items()}
    return old


def test_a_state_file_of_todays_shape_without_a_schema_is_read_and_restored(site):
    s = site()
    run_outage(s)
    assert s.host_powers() == ALL_OFF
    written = s.state_file.read()
    assert written["schema"] == SCHEMA_VERSION and written["phase"] == "site_down"
    s.state_file.write_raw(json.dumps(_as_schema_1(written)))
    loaded = StateFile(s.tmp / "state").load()
    assert "damaged_records" not in loaded and loaded["snapshot"] == written["snapshot"]
    flow, report = run_restore(s)
    assert report.result == "site restored", report.summary()
    assert set(s.vm_states().values()) == {"running"} and s.ha_enabled is True
    after = s.state_file.read()
    assert after["schema"] == SCHEMA_VERSION and "version" not in after and after["phase"] == "idle"


def _newer(s):
    text = json.dumps({"schema": SCHEMA_VERSION + 1, "phase": "site_down", "snapshot": {"anything": "new"},
                       "what_a_newer_hgs_keeps": [1, 2]})
    s.state_file.write_raw(text)
    return text


def test_a_newer_schema_is_refused_by_name_and_the_file_left_as_it_is(site):
    from hgs.commands.selftest import Checks, check_state
    from hgs.commands.status import phase_report

    s = site()
    s.deps()
    text = _newer(s)
    with pytest.raises(NewerStateError) as caught:
        StateFile(s.tmp / "state").read()
    message = str(caught.value)
    assert s.state_file.path in message and f"schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade hgs" in message and "move the file aside" in message
    report = phase_report(s.settings)
    assert report["phase"] is None and report["state_error"] == message
    checks = Checks(s.log.logger)
    check_state(None, s.settings, checks, None)
    assert any(kind == "FAIL" and "upgrade hgs" in what for kind, _, what in checks.items), checks.items
    assert (s.tmp / "state" / "state.json").read_text() == text  # reading never moves it


def test_an_outage_with_a_newer_state_file_protects_the_site_and_keeps_the_file_aside(site):
    s = site()
    s.deps()
    text = _newer(s)
    flow, report, mailer, code = run_outage(s)
    assert s.host_powers() == ALL_OFF and s.ha_enabled is False, report.summary()
    assert "written by a newer hgs" in report.summary() and code == 1
    kept, = (s.tmp / "state").glob("state.json.newer-*")
    assert kept.read_text() == text
    state = s.state_file.read()
    assert state["schema"] == SCHEMA_VERSION and state["phase"] == "site_down"
    assert {vm["name"] for vm in state["snapshot"]["vms"].values()} == {vm.name for vm in s.vms.values()}


@pytest.mark.parametrize("text", ['{"schema": "2", "phase": "idle"}', '{"schema": 0, "phase": "idle"}',
                                  '{"schema": true, "phase": "idle"}', '{"version": 7, "phase": "idle"}',
                                  '{"version": true, "phase": "idle"}', '{"schema": 2, "phase": "resting"}'])
def test_a_state_hgs_did_not_write_is_refused_saying_what_to_do(tmp_path, text):
    (tmp_path / "state.json").write_text(text)
    state_file = StateFile(tmp_path)
    with pytest.raises(StateError) as caught:
        state_file.read()
    assert not isinstance(caught.value, NewerStateError)
    assert str(tmp_path / "state.json") in str(caught.value) and "move it aside" in str(caught.value)
    state_file.save(State())
    kept, = tmp_path.glob("state.json.broken-*")
    assert kept.read_text() == text


def _not_default(cls, index):
    """Returns a value for every field of the record class ``cls`` that differs from its default."""
    out = {}
    for f in dataclasses.fields(cls):
        kind = f.type if isinstance(f.type, str) else str(f.type)
        if f.name == "action":
            out[f.name] = "suspend"
        elif "bool" in kind:
            out[f.name] = not f.default
        elif "int" in kind or "float" in kind:
            out[f.name] = 7 + index
        elif "list" in kind:
            out[f.name] = [f"{f.name}-{index}-a", f"{f.name}-{index}-b"]
        else:
            out[f.name] = f"{f.name}-{index}"
    return out


def test_a_round_trip_through_the_file_keeps_every_field(tmp_path):
    vms = {f"vm-{i}": VmRecord(**dict(_not_default(VmRecord, i), uuid=f"vm-{i}")) for i in range(2)}
    hosts = {f"host-{i}": HostRecord(**_not_default(HostRecord, i)) for i in range(2)}
    pools = {"pool-0": PoolRecord(**_not_default(PoolRecord, 0))}
    state = State("site_down", Snapshot("2026-12-05T10:00:00+0000", "run-9", pools, hosts, vms), ["vm-1"])
    for record in (*vms.values(), *hosts.values(), *pools.values()):
        defaults = type(record)()
        assert all(getattr(record, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(record))
    StateFile(tmp_path).save(state)
    again = StateFile(tmp_path).read()
    assert again == state and not again.damaged
    assert json.loads((tmp_path / "state.json").read_text())["schema"] == SCHEMA_VERSION
    run = RunRecord(**dict(_not_default(RunRecord, 0), vms=[RunItem("db", "clean", 3.5, "x")],
                           hosts=[RunItem("xen1", "shut down, confirmed down", 20.0)]))
    assert RunRecord.from_dict(json.loads(json.dumps(run.to_dict()))) == run


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
KEYS = st.sampled_from(["schema", "version", "phase", "snapshot", "restore_pending", "updated", "pools", "hosts",
                        "vms", "taken", "run_id", "uuid", "name", "pool", "host", "order", "start_delay", "tools",
                        "action", "shed", "master", "ha_was_enabled", "ha_srs", "executor", "config", "address",
                        "id", "command", "started", "ended", "failed", "outcome", "seconds"])
RECORD = st.dictionaries(KEYS, JSON, max_size=6)
# tests/flows alone: a quick look; tests/run (HGS_THOROUGH=1): the full fuzz
FUZZ = settings(max_examples=300 if os.environ.get("HGS_THOROUGH") == "1" else 30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(JSON)
def test_any_json_as_the_state_raises_only_hgs_errors(data):
    for read in (State.from_dict, Snapshot.from_dict, RunRecord.from_dict):
        try:
            read(data)
        except HgsError:
            pass


@FUZZ
@given(st.sampled_from([1, 2]), st.sampled_from(["idle", "site_down"]),
       st.dictionaries(st.sampled_from(["pools", "hosts", "vms", "taken", "run_id"]),
                       st.dictionaries(st.text(max_size=4), RECORD | JSON, max_size=3) | JSON, max_size=5),
       JSON)
def test_any_records_in_a_state_read_without_raising_and_round_trip_clean(schema, phase, snapshot, pending):
    data = {"schema": schema, "phase": phase, "snapshot": snapshot, "restore_pending": pending}
    if schema == 1:
        data = dict(data, version=data.pop("schema"))
    state = State.from_dict(json.loads(json.dumps(data)))
    again = State.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state and not again.damaged


@FUZZ
@given(st.dictionaries(KEYS, JSON | st.lists(RECORD, max_size=3), max_size=8))
def test_any_run_record_reads_without_raising_and_round_trips(data):
    record = RunRecord.from_dict(data)
    assert RunRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_second_outage_keeps_the_earlier_snapshot_and_adds_what_runs_now():
    earlier = Snapshot("2026-12-01T00:00:00+0000", "run-1",
                       {"p1": PoolRecord("h1", True, ["sr-1"]), "p2": PoolRecord("h9", False, [])},
                       {"h1": HostRecord("xen1", "xen1", "p1", True)},
                       {"v1": VmRecord("v1", "db", "p1", "h1", order=2, action="suspend")})
    now = Snapshot("2026-12-02T00:00:00+0000", "run-2",
                   {"p1": PoolRecord("h1", False, ["sr-2"]), "p2": PoolRecord("h9", True, ["sr-9"])},
                   {"h1": HostRecord("renamed"), "h2": HostRecord("xen2", "xen2", "p1")},
                   {"v1": VmRecord("v1", "db-now", "p1"), "v2": VmRecord("v2", "web", "p1")})
    merged = earlier.merged(now)
    assert (merged.taken, merged.run_id) == ("2026-12-01T00:00:00+0000", "run-1")
    assert merged.vms == {"v1": earlier.vms["v1"], "v2": now.vms["v2"]}
    assert merged.hosts == {"h1": earlier.hosts["h1"], "h2": now.hosts["h2"]}
    assert merged.pools["p1"] == PoolRecord("h1", True, ["sr-1"])  # HA stays on, the SR it knew stands
    assert merged.pools["p2"] == PoolRecord("h9", True, ["sr-9"])
    assert earlier.pools["p2"] == PoolRecord("h9", False, [])  # the earlier snapshot itself is unchanged


@FUZZ
@given(st.binary(max_size=64) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_in_the_state_file_read_as_a_state_or_a_state_error(content):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/state.json", "wb") as handle:
            handle.write(content)
        try:
            assert isinstance(StateFile(folder).read(), State)
        except StateError as err:
            assert f"{folder}/state.json" in str(err)


def test_a_restore_refuses_a_newer_state_file_starts_nothing_and_leaves_it(site):
    s = site()
    run_outage(s)
    text = _newer(s)
    with pytest.raises(NewerStateError):
        run_restore(s)
    assert set(s.vm_states().values()) == {"halted"}
    assert (s.tmp / "state" / "state.json").read_text() == text
