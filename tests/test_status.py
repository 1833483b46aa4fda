"""`hgs status`: the VMs by name per host, and where each VM of the snapshot stands while a flow runs."""

import json
import subprocess

import pytest

from harness import HGS, wait_for

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": False},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:1a:01", "shutdown_s": 5, "boot_s": 10,
                       "xapi_start_s": 5},
                      {"name": "xen2", "mac": "02:00:00:00:1a:02", "shutdown_s": 5, "boot_s": 10, "xapi_start_s": 5}],
            "vms": [{"name": "db", "host": "xen1", "order": 1, "shutdown_s": 20, "start_s": 30},
                    {"name": "stubborn", "host": "xen2", "order": 1, "shutdown_s": 3000, "start_s": 30},
                    {"name": "nt4", "host": "xen2", "tools": False, "order": 0, "start_s": 10, "start_delay": 240},
                    {"name": "off", "power_state": "halted"}]}


@pytest.fixture
def lab(site_lab):
    return site_lab(SCENARIO, ups_state="online", timings={"vm_shutdown_timeout_s": 15},
                    extra="MAIL = {'when': 'never'}\n")


@pytest.fixture
def background():
    procs = []

    def start(lab, *args):
        proc = subprocess.Popen([HGS, "--config", str(lab.config), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=30)


def _status(lab):
    result = lab.hgs("status", "--json")
    return json.loads(result.stdout)


def _stands(report):
    return {vm["name"]: vm["stands"] for vm in report["snapshot"]}


def test_status_names_each_vm_per_host_with_power_tools_and_group(lab):
    report = _status(lab)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert [(v["name"], v["power_state"], v["tools"], v["order"], v["group"]) for v in hosts["xen1"]["vms"]] == \
        [("db", "running", True, 1, 1)]
    assert [(v["name"], v["tools"], v["group"]) for v in hosts["xen2"]["vms"]] == [("nt4", False, 2),
                                                                                   ("stubborn", True, 1)]
    assert hosts["xen1"]["halted"] == ["off"] and report["snapshot"] == []
    human = lab.hgs("status").stdout
    assert "    db: running, tools, order 1, shutdown group 1" in human
    assert "    nt4: running, NO TOOLS (forced), order 0, shutdown group 2" in human
    assert "    stubborn: running, tools, order 1, shutdown group 1" in human
    assert "    halted in the pool: off" in human


def test_status_during_an_outage_and_a_restore_says_where_each_vm_stands(lab, background):
    lab.ups.set_state("onbatt")
    outage = background(lab, "onbattery", "--foreground")
    # db shuts down cleanly at once; stubborn would take 50 s: it is forced after 15 s
    report = wait_for(lambda: (lambda r: r if _stands(r).get("db", "").startswith("down: clean shutdown") else None)(
        _status(lab)), 30, "db to be down while the outage flow runs", interval_s=0.3)
    assert report["phase"] == "shutting_down" and report["running_flow"]["kind"] == "outage"
    stands = _stands(report)
    assert stands["stubborn"] == "running: to shut down" and stands["nt4"] == "running: to shut down"
    assert {vm["name"]: vm["host"] for vm in report["snapshot"]} == {"db": "xen1", "stubborn": "xen2", "nt4": "xen2"}
    result = lab.hgs("status")
    human = result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "  the snapshot's VMs (what hgs shut down and brings back):" in human
    assert "    db (on xen1, order 1): down: clean shutdown in " in human
    assert "    stubborn (on xen2, order 1): running: to shut down" in human
    assert outage.wait(60) == 0, outage.communicate()[0]

    report = _status(lab)
    assert report["phase"] == "site_down" and report["running_flow"] is None
    stands = _stands(report)
    assert stands["stubborn"].startswith("down: forced in ") and stands["nt4"].startswith("down: forced in ")

    lab.ups.set_state("online")
    restore = background(lab, "offbattery", "--foreground")
    # nt4 (order 0) starts first; its start delay holds db and stubborn back for 4 s
    report = wait_for(lambda: (lambda r: r if _stands(r).get("nt4", "").startswith("running: started") else None)(
        _status(lab)), 60, "nt4 to be started by the restore", interval_s=0.3)
    assert report["phase"] == "restoring" and report["running_flow"]["kind"] == "restore"
    assert _stands(report)["db"] == "to start" and _stands(report)["stubborn"] == "to start"
    assert restore.wait(90) == 0, restore.communicate()[0]
    report = _status(lab)
    assert report["phase"] == "idle" and report["snapshot"] == []
