"""Metrics: `hgs status --prometheus` and the textfile collector file, read by prometheus_client's parser."""

import os
import stat

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hgs.box import metrics
from hgs.flows.snapshot import RunRecord

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": True},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:1b:01", "shutdown_s": 5},
                      {"name": "xen2", "mac": "02:00:00:00:1b:02", "shutdown_s": 5}],
            "vms": [{"name": "db", "host": "xen1", "shutdown_s": 10}, {"name": "nt4", "host": "xen2", "tools": False},
                    {"name": "off", "power_state": "halted"}]}


def parse(text):
    """Returns {(name, sorted labels): value}, every family's type checked as gauge."""
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def lab(site_lab, tmp_path):
    collector = tmp_path / "textfile_collector"
    collector.mkdir()
    lab = site_lab(SCENARIO, ups_state="onbatt",
                   extra=f"MAIL = {{'when': 'never'}}\nMETRICS = {{'textfile': {str(collector / 'hgs.prom')!r}}}\n")
    lab.collector = collector
    return lab


def test_each_run_writes_the_textfile_and_status_prints_the_exposition(lab):
    prom = lab.collector / "hgs.prom"
    assert lab.hgs("onbattery", "--foreground").returncode == 0
    assert stat.S_IMODE(os.stat(prom).st_mode) == 0o644
    assert sorted(os.listdir(lab.collector)) == ["hgs.prom"]  # no temporary file left behind
    values = parse(prom.read_text())
    on = (("command", "onbattery"),)
    assert values[("hgs_last_run_success", on)] == 1
    assert values[("hgs_last_run_vms", on)] == 2 and values[("hgs_last_run_vms_forced", on)] == 1  # nt4: no tools
    assert values[("hgs_last_run_hosts_down", on)] == 2 and values[("hgs_last_run_hosts_still_up", on)] == 0
    assert 0 < values[("hgs_last_run_duration_seconds", on)] < 120
    assert values[("hgs_last_run_result", (("command", "onbattery"), ("result", "site down")))] == 1

    result = lab.hgs("status", "--prometheus")
    values = parse(result.stdout)
    assert values[("hgs_ups_up", ())] == 1 and values[("hgs_ups_on_battery", ())] == 1
    assert 0 < values[("hgs_ups_battery_charge_percent", ())] <= 100 and values[("hgs_ups_runtime_seconds", ())] > 0
    assert values[("hgs_phase", (("phase", "site_down"),))] == 1 and values[("hgs_phase", (("phase", "idle"),))] == 0
    assert values[("hgs_snapshot_vms", ())] == 2 and values[("hgs_flow_running", ())] == 0
    assert values[("hgs_host_up", (("host", "xen1"),))] == 0  # both hosts are down now
    assert values[("hgs_last_run_success", on)] == 1

    lab.ups.set_state("online")
    assert lab.hgs("offbattery", "--foreground").returncode == 0
    values = parse(prom.read_text())
    off = (("command", "offbattery"),)
    assert values[("hgs_last_run_success", off)] == 1 and values[("hgs_last_run_vms", off)] == 2
    assert values[("hgs_last_run_success", on)] == 1  # the outage's last run is kept beside it
    values = parse(lab.hgs("status", "--prometheus").stdout)
    assert values[("hgs_host_up", (("host", "xen1"),))] == 1 and values[("hgs_host_master", (("host", "xen1"),))] == 1
    assert values[("hgs_host_vms_running", (("host", "xen2"),))] == 1
    assert values[("hgs_host_vms_without_tools", (("host", "xen2"),))] == 1
    assert values[("hgs_pool_ha_enabled", (("host", "xen1"),))] == 1
    assert values[("hgs_phase", (("phase", "idle"),))] == 1


def test_a_missing_collector_folder_is_logged_and_the_run_goes_on(lab):
    lab.collector.rmdir()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0
    assert "metrics: cannot write" in lab.log_text() and "does not exist" in lab.log_text()


def test_labels_are_escaped_for_any_name():
    report = {"ups": {"error": "down", "state": None},
              "hosts": [{"name": 'x"en\\1\nb', "reachable": True, "error": None, "enabled": True, "master": True,
                         "vms_running": 3, "no_tools": [], "ha_enabled": False}], "took_s": 0.5}
    runs = {"onbattery": RunRecord.from_dict({"command": "onbattery", "started": 10.0, "ended": 70.5, "failed": True,
                                              "result": 'site down "with" failures', "vms": [{"outcome": "reset"}],
                                              "hosts": [{"outcome": "STILL UP"}]})}
    values = parse(metrics.from_status(dict(report, phase="shutting_down", running_flow={"pid": 1}, snapshot_vms=1),
                                       runs))
    assert values[("hgs_host_vms_running", (("host", 'x"en\\1\nb'),))] == 3
    assert values[("hgs_ups_up", ())] == 0 and ("hgs_ups_on_battery", ()) not in values
    result = (("command", "onbattery"), ("result", 'site down "with" failures'))
    assert values[("hgs_last_run_result", result)] == 1
    assert values[("hgs_last_run_duration_seconds", (("command", "onbattery"),))] == 60.5
    assert values[("hgs_last_run_vms_forced", (("command", "onbattery"),))] == 1
    assert values[("hgs_last_run_hosts_still_up", (("command", "onbattery"),))] == 1
    assert values[("hgs_flow_running", ())] == 1
