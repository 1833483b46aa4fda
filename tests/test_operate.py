"""Operating hgs: self-test (healthy and each broken variant), status, trust, run history."""

import json
import subprocess

import pytest

from hgs.box import history
from hgs.flows.report import Report
from hgs.sim.xe import CHANGING

SCENARIO = {"time_scale": 60, "pool": {"name": "pool", "ha_enabled": True},
            "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0d:01"},
                      {"name": "xen2", "mac": "02:00:00:00:0d:02"}],
            "vms": [{"name": "db", "host": "xen1"}, {"name": "nt4", "host": "xen2", "tools": False},
                    {"name": "off", "power_state": "halted"}]}


@pytest.fixture
def healthy(site_lab):
    return site_lab(SCENARIO, ups_state="online", extra="MAIL = {'when': 'failure', 'sendmail_path': '/bin/true'}\n")


def test_selftest_passes_on_a_healthy_site_and_changes_nothing(healthy):
    result = healthy.hgs("selftest", "-v", "--mail", "never")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "selftest: all well" in result.stdout
    assert "ok    host xen1: SSH with the pinned key, xe answers; pool master, enabled, HA on" in result.stdout
    assert "ok    host xen2: SSH with the pinned key, xe answers; pool member" in result.stdout
    assert "warn  host xen2: guests without tools will be forced, not shut down cleanly: nt4" in result.stdout
    assert healthy.calls("vm-list") and [c for c in healthy.calls() if c[2] in CHANGING] == []


def _fail(lab, *phrases):
    result = lab.hgs("selftest", "--mail", "never")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "selftest: FAILED" in result.stdout
    for phrase in phrases:
        assert phrase in result.stdout, (phrase, result.stdout)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def test_selftest_ups_daemon_down(healthy):
    healthy.nis.stop()
    _fail(healthy, "FAIL  UPS: apcupsd at", "cannot connect", "start the UPS daemon")


def test_selftest_host_key_unknown(healthy):
    healthy.site.known_hosts.write_text("")
    _fail(healthy, "FAIL  host xen1:", "not pinned", "run 'hgs trust xen1'")


def test_selftest_host_key_changed(healthy, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    port = healthy.site.doors["xen1"].port
    lines = [line for line in healthy.site.known_hosts.read_text().splitlines() if f":{port} " not in line]
    healthy.site.known_hosts.write_text("\n".join(lines + [f"[127.0.0.1]:{port} {other}"]) + "\n")
    _fail(healthy, "FAIL  host xen1:", "the host key CHANGED", "pinned SHA256:", "--replace")


def test_selftest_sshd_down(healthy):
    healthy.site.doors["xen2"].down()
    _fail(healthy, "FAIL  host xen2:", "cannot connect", "check the host is up")


def test_selftest_xe_missing_on_the_host(healthy):
    text = healthy.config.read_text().replace(str(healthy.site.bin_dirs["xen1"] / "xe"), "/opt/nowhere/xe")
    healthy.config.write_text(text)
    _fail(healthy, "FAIL  host xen1:", "/opt/nowhere/xe cannot be run on the host", "xe_path")


def test_selftest_sendmail_missing(site_lab):
    lab = site_lab(SCENARIO, ups_state="online", extra="MAIL = {'sendmail_path': '/nonexistent/sendmail'}\n")
    _fail(lab, "FAIL  mail: no sendmail at /nonexistent/sendmail", "apt install postfix")


def test_selftest_mac_missing(healthy):
    healthy.config.write_text(healthy.config.read_text().replace("'mac': '02:00:00:00:0d:02', ", ""))
    _fail(healthy, "FAIL  host xen2 MAC: no MAC configured: hgs cannot wake it")


def test_selftest_runtime_shorter_than_the_plan(healthy):
    # 200 s of runtime minus the 120 s reserve cannot cover 120 s graceful + 3 s force + 2 host stages of 8 s
    healthy.ups.full_runtime_s = 200
    healthy.write_config({"vm_shutdown_timeout_s": 120}, healthy.extra)
    _fail(healthy, "FAIL  plan: the worst case", "is longer than the UPS runtime")


def test_selftest_starts_the_restore_of_a_site_left_down_with_mains_present(healthy):
    healthy.ups.set_state("onbatt")
    assert healthy.hgs("onbattery", "--foreground").returncode == 0
    healthy.ups.set_state("online")
    result = healthy.hgs("selftest", "-v", "--mail", "never")
    assert "the site was left down by hgs (site_down) and the mains are present: restore started" in result.stdout
    from harness import wait_for

    wait_for(lambda: healthy.site.vm_states() == {"db": "running", "nt4": "running", "off": "halted"}, 60,
             "the restore the self-test started")
    wait_for(lambda: "restore flow finished: site restored" in healthy.log_text(), 30, "the restore to end")


def test_status_json_and_human(healthy):
    result = healthy.hgs("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ups"]["state"] == "on_line" and isinstance(report["ups"]["runtime_s"], int)
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts["xen1"]["reachable"] and hosts["xen1"]["master"] is True and hosts["xen2"]["master"] is False
    assert hosts["xen2"]["no_tools"] == ["nt4"] and hosts["xen1"]["vms_running"] == 1  # resident on it: db
    assert report["phase"] == "idle" and report["running_flow"] is None and report["last_runs"] == []
    assert report["took_s"] < 6
    human = healthy.hgs("status")
    assert "host xen1 (127.0.0.1:" in human.stdout and "reachable, master, enabled, pool HA on" in human.stdout
    assert "VMs: 1 running here, 1 halted in the pool; without tools (would be forced): nt4" in human.stdout


def test_status_says_which_part_failed_and_stays_fast(healthy):
    healthy.site.doors["xen2"].down()
    result = healthy.hgs("status", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    xen2 = next(h for h in report["hosts"] if h["name"] == "xen2")
    assert xen2["reachable"] is False and xen2["error_kind"] == "ssh"
    assert report["took_s"] < 6


def test_status_lists_the_last_runs(healthy):
    healthy.ups.set_state("onbatt")
    assert healthy.hgs("onbattery", "--foreground").returncode == 0
    report = json.loads(healthy.hgs("status", "--json").stdout)
    assert report["phase"] == "site_down" and report["snapshot_vms"] == 2
    assert report["last_runs"][0]["command"] == "onbattery" and report["last_runs"][0]["result"] == "site down"


def test_trust_pins_the_key_of_a_real_sshd_and_refuses_a_swapped_one(healthy):
    door = healthy.site.doors["xen1"]
    healthy.site.known_hosts.write_text("")
    result = healthy.hgs("trust", "xen1", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    pub = (door.folder / "hostkey.pub").read_text().split()
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(door.folder / "hostkey.pub")], capture_output=True,
                                 text=True).stdout.split()[1]
    assert f"offers a ssh-ed25519 key, fingerprint {fingerprint}" in result.stdout
    assert f"[127.0.0.1]:{door.port} ssh-ed25519 {pub[1]}" in healthy.site.known_hosts.read_text()
    assert healthy.hgs("trust", "xen1", "--yes").stdout.strip().endswith("already pinned in "
                                                                        f"{healthy.site.known_hosts}: nothing to do")
    door.down()  # the host is "reinstalled": a new host key
    (door.folder / "hostkey").unlink()
    (door.folder / "hostkey.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(door.folder / "hostkey")], check=True)
    door.up()
    refused = healthy.hgs("trust", "xen1", "--yes")
    assert refused.returncode == 1
    assert "REFUSED: xen1's key CHANGED." in refused.stdout and f"pinned: ssh-ed25519 {fingerprint}" in refused.stdout
    assert pub[1] in healthy.site.known_hosts.read_text()  # unchanged
    replaced = healthy.hgs("trust", "xen1", "--yes", "--replace")
    assert replaced.returncode == 0 and pub[1] not in healthy.site.known_hosts.read_text()
    assert healthy.hgs("trust", "xen2", "--yes").returncode == 0
    assert healthy.hgs("selftest", "--mail", "never").returncode == 0


def test_trust_without_a_terminal_or_yes_pins_nothing(healthy):
    healthy.site.known_hosts.write_text("")
    result = healthy.hgs("trust", "xen1")
    assert result.returncode == 1 and "pass --yes" in result.stdout
    assert healthy.site.known_hosts.read_text() == ""


def test_trust_names_an_unknown_host(healthy):
    result = healthy.hgs("trust", "nope")
    assert result.returncode == 1 and "no host called 'nope'" in result.stderr and "xen1, xen2" in result.stderr


def test_history_is_bounded_and_newest_first(tmp_path):
    for index in range(history.KEEP + 5):
        report = Report("outage", f"20261121-0000{index:02d}-abcd")
        report.finish("site down")
        history.record(tmp_path, report, "onbattery", 1000 + index)
    records = history.recent(tmp_path, 3)
    assert [r.id for r in records] == [f"20261121-0000{i:02d}-abcd" for i in (54, 53, 52)]
    assert len(list((tmp_path / "runs").iterdir())) == history.KEEP


def test_log_rotation(tmp_path):
    from hgs.box.log import rotate

    log = tmp_path / "hgs.log"
    log.write_text("x" * 100)
    assert rotate(str(log), max_bytes=50, keep=2) and (tmp_path / "hgs.log.1").exists() and not log.exists()
    log.write_text("y" * 100)
    assert rotate(str(log), max_bytes=50, keep=2)
    assert (tmp_path / "hgs.log.2").read_text() == "x" * 100 and (tmp_path / "hgs.log.1").read_text() == "y" * 100
