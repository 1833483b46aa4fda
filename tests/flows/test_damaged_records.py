"""A damaged record in the state file costs that record, never the restore or `hgs status`."""

import json
import os

from restore_fakes import Site, run_restore

from hgs.box.state import VERSION, SITE_DOWN, StateFile


def _through_the_state_file(tmp_path, snapshot):
    """Returns the snapshot as the restore reads it: written as JSON, loaded by StateFile."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": VERSION, "phase": SITE_DOWN, "snapshot": snapshot, "updated": None}))
    return StateFile(str(tmp_path)).load()


def test_a_snapshot_holding_only_the_pools_record_does_not_stop_the_restore(tmp_path):
    site = Site()
    loaded = _through_the_state_file(tmp_path, {"pools": site.snapshot()["pools"]})
    flow, report, _ = run_restore(site, snapshot=loaded["snapshot"])
    assert report.result != "running", report.summary()
    assert "0 VM(s), 0 host(s)" in report.summary()


def test_damaged_vm_records_are_left_out_named_and_the_others_restored(tmp_path):
    site = Site()
    snapshot = site.snapshot()
    uuids = sorted(snapshot["vms"])
    snapshot["vms"][uuids[0]] = 5
    snapshot["vms"][uuids[1]]["order"] = "2"  # a number written as text still orders
    snapshot["vms"][uuids[2]]["order"] = "soon"
    loaded = _through_the_state_file(tmp_path, snapshot)
    assert uuids[0] not in loaded["snapshot"]["vms"]
    flow, report, _ = run_restore(site, snapshot=loaded["snapshot"])
    text = report.summary()
    started = {item.name for item in report.vms if item.outcome == "started"}
    assert len(started) == len(uuids) - 1, text
    assert loaded["damaged_records"] and any("a JSON int" in d for d in loaded["damaged_records"])


def test_damaged_run_records_never_break_the_metrics(tmp_path):
    from hgs.box import history
    from hgs.box import metrics

    where = history.folder(str(tmp_path))
    os.makedirs(where)
    (tmp_path / "bad").mkdir()
    for name, text in (("20260101-000000-aaaa.json", "[]"),
                       ("20260101-000001-bbbb.json", json.dumps({"command": "onbattery", "started": "x", "ended": 5,
                                                                  "vms": [3, {"outcome": "forced"}]}))):
        with open(os.path.join(where, name), "w") as handle:
            handle.write(text)
    text = metrics.write_textfile(str(tmp_path / "bad" / "hgs.prom"), str(tmp_path))
    assert 'hgs_last_run_vms_forced{command="onbattery"} 1' in text, text
