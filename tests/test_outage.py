"""The outage flow end to end: real OpenSSH fronting the simulated xe, the simulated UPS as
apcupsd NIS, `hgs onbattery --foreground` / `hgs doshutdown` run as a user's hook would."""

import subprocess
import threading
import time

import pytest

from hgs.sim.xe import CHANGING
from harness import HGS

HOSTILE = "it's \"odd\"; $(touch /tmp/hgs-pwned) `id` x"

ONE_HOST = {
    "time_scale": 60,
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:00:01", "shutdown_s": 20}],
    "vms": [{"name": f"app{i}", "shutdown_s": 20 + 7 * i, "order": 1} for i in range(7)] + [
        {"name": "notools", "tools": False},
        {"name": "deaf", "quirk": "ignores_shutdown"},
        {"name": "was-off", "power_state": "halted"},
        {"name": "storage", "shutdown_s": 15},
        {"name": HOSTILE, "shutdown_s": 10},
    ],
}

POOL = {
    "time_scale": 60,
    "pool": {"name": "pool", "ha_enabled": True},
    "hosts": [{"name": "master", "master": True, "mac": "02:00:00:00:01:01", "shutdown_s": 20},
              {"name": "member1", "mac": "02:00:00:00:01:02", "shutdown_s": 20},
              {"name": "member2", "mac": "02:00:00:00:01:03", "shutdown_s": 20}],
    "vms": [{"name": f"vm{i}", "host": ["master", "member1", "member2"][i % 3], "shutdown_s": 15 + 5 * i}
            for i in range(6)],
}


def forced(lab):
    return sorted(lab.target(argv) for _, _, _, argv in lab.calls("vm-shutdown") if "--force" in argv)


def test_one_host_twelve_vms_all_halted_quirky_ones_forced_last_goes_last(site_lab, postfix):
    lab = site_lab(ONE_HOST, extra="VMS = {'stop_last': ['storage']}\n"
                                   "MAIL = {'to': ['root'], 'subject_tag': '[hgs-outage-test]'}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    states = lab.site.vm_states()
    assert set(states.values()) == {"halted"}, states
    assert forced(lab) == ["deaf", "notools"]
    shutdowns = lab.calls("vm-shutdown")
    storage_at = min(t for t, _, _, argv in shutdowns if lab.target(argv) == "storage")
    others_at = [t for t, _, _, argv in shutdowns if lab.target(argv) != "storage"]
    assert storage_at > max(others_at), "the 'last' VM must go after every other"
    assert "was-off" not in {lab.target(a) for _, _, _, a in shutdowns}  # already halted: left alone
    host = lab.site.store.read()["hosts"]
    assert [(h["power"], h["enabled"]) for h in host.values()] == [("off", False)]
    assert [c[2] for c in lab.calls() if c[2].startswith("host-")][-2:] == ["host-disable", "host-shutdown"]
    assert "xen1: shut down, confirmed down" in result.stdout
    mail = postfix.wait_for_text("[hgs-outage-test] outage site down")
    for line in ("deaf: forced in", "notools: forced in", "app3: clean in", "storage: clean in",
                 f"{HOSTILE}: clean in", "xen1: shut down, confirmed down", "Full log:"):
        assert line in mail, line


def test_hostile_vm_names_are_plain_names(site_lab, tmp_path):
    import os

    lab = site_lab({"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:00:01", "shutdown_s": 5}],
                    "vms": [{"name": HOSTILE}, {"name": "a\nuuid ( RO)           : 00000000-0000-0000-0000-000000000000"},
                            {"name": "x" * 3000}, {"name": "; shutdown -h now;"}]},
                   extra="MAIL = {'when': 'never'}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert not os.path.exists("/tmp/hgs-pwned")
    for _, _, _, argv in lab.calls():
        assert not any(HOSTILE in a or "shutdown -h" in a for a in argv)  # names never reach a command


def test_pool_ha_off_first_members_before_master_state_recorded(site_lab):
    lab = site_lab(POOL, extra="MAIL = {'when': 'never'}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    changing = lab.changing_calls()
    assert changing[0][2] == "pool-ha-disable"
    assert all(c[2] != "vm-shutdown" for c in changing[:1])
    shutdowns = [lab.target(argv) for _, _, command, argv in changing if command == "host-shutdown"]
    assert shutdowns[-1] == "master" and sorted(shutdowns[:2]) == ["member1", "member2"]
    last_vm = max(t for t, _, command, _ in changing if command == "vm-shutdown")
    first_host = min(t for t, _, command, _ in changing if command == "host-disable")
    assert last_vm < first_host
    state = lab.state_file()
    assert state["phase"] == "site_down"
    pool = next(iter(state["snapshot"]["pools"].values()))
    assert pool["ha_was_enabled"] is True and len(pool["ha_srs"]) == 1
    assert sorted(v["name"] for v in state["snapshot"]["vms"].values()) == [f"vm{i}" for i in range(6)]
    site = lab.site.store.read()
    assert site["pool"]["ha_enabled"] is False
    assert {h["name"]: h["power"] for h in site["hosts"].values()} == {"master": "off", "member1": "off",
                                                                         "member2": "off"}


def test_power_back_during_confirmation_changes_nothing(site_lab):
    lab = site_lab(ONE_HOST, timings={"confirm_outage_s": 5}, extra="MAIL = {'when': 'never'}\n")
    threading.Timer(0.7, lambda: lab.ups.set_state("online")).start()
    start = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0
    assert time.monotonic() - start < 4
    assert "power came back during confirmation" in result.stdout
    assert lab.changing_calls() == []  # the reads ahead of the window's end change nothing


def test_power_back_after_vm_shutdowns_began_the_flow_completes(site_lab):
    lab = site_lab(ONE_HOST, extra="MAIL = {'when': 'never'}\n")

    def power_back_once_shutdowns_run():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not lab.calls("vm-shutdown"):
            time.sleep(0.02)
        lab.ups.set_state("online")

    threading.Thread(target=power_back_once_shutdowns_run, daemon=True).start()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert lab.state_file()["phase"] == "site_down"
    assert "battery at the end" in result.stdout and "(on line)" in result.stdout


def test_doshutdown_during_the_graceful_wait_forces_at_once_and_returns_within_its_bound(site_lab):
    scenario = dict(ONE_HOST, vms=[{"name": f"slow{i}", "shutdown_s": 600} for i in range(4)])
    lab = site_lab(scenario, timings={"vm_shutdown_timeout_s": 60, "doshutdown_bound_s": 12},
                   extra="MAIL = {'when': 'never'}\n")
    flow = subprocess.Popen([HGS, "--config", str(lab.config), "onbattery", "--foreground"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(lab.calls("vm-shutdown")) < 4:
            time.sleep(0.05)
        assert len(lab.calls("vm-shutdown")) == 4, "the clean shutdowns should be running"
        start = time.monotonic()
        result = lab.hgs("doshutdown")
        took = time.monotonic() - start
        assert result.returncode == 0, result.stderr
        assert took < 12
        out, _ = flow.communicate(timeout=30)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert forced(lab) == [f"slow{i}" for i in range(4)]
    assert "this box is shutting down" in out
    assert lab.site.store.read()["hosts"].popitem()[1]["power"] == "off"


def test_doshutdown_without_a_running_flow_forces_everything_within_its_bound(site_lab):
    scenario = dict(ONE_HOST, vms=[{"name": f"slow{i}", "shutdown_s": 600} for i in range(3)])
    lab = site_lab(scenario, timings={"doshutdown_bound_s": 10}, extra="MAIL = {'when': 'never'}\n")
    start = time.monotonic()
    result = lab.hgs("doshutdown")
    assert time.monotonic() - start < 10
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert forced(lab) == ["slow0", "slow1", "slow2"]


def test_short_runtime_shortens_the_graceful_deadlines(site_lab):
    scenario = dict(ONE_HOST, vms=[{"name": "slow", "shutdown_s": 1800}, {"name": "quick", "shutdown_s": 10}])
    timings = {"vm_shutdown_timeout_s": 120, "vm_force_timeout_s": 3, "host_shutdown_timeout_s": 8}
    lab = site_lab(scenario, timings=timings, extra="MAIL = {'when': 'never'}\n")
    lab.ups.full_runtime_s = 30  # the battery holds 30 s: 25 s after the 5 s reserve
    lab.write_config(timings, extra="MAIL = {'when': 'never'}\n", ups_extra=", 'runtime_reserve_s': 5")
    start = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    took = time.monotonic() - start
    assert result.returncode == 0, result.stdout
    assert "graceful shutdown deadlines shortened from 120 s to" in result.stdout
    assert forced(lab) == ["slow"]
    assert "to 14 s per group" in result.stdout  # 25 s available - 3 s force - 8 s hosts
    assert took < 30  # not the 120 s graceful wait


def test_a_vm_whose_shutdown_never_returns_does_not_hold_the_flow(site_lab):
    scenario = dict(ONE_HOST, vms=[{"name": "hung", "quirk": "hangs"}, {"name": "fine", "shutdown_s": 10}])
    lab = site_lab(scenario, timings={"vm_shutdown_timeout_s": 2}, extra="MAIL = {'when': 'never'}\n")
    start = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert time.monotonic() - start < 15  # its xe call would block for 1200 simulated s (20 s)
    assert "hung: forced" in result.stdout and "no clean shutdown within 2 s" in result.stdout
    assert set(lab.site.vm_states().values()) == {"halted"}


@pytest.mark.parametrize("scenario,extra", [(ONE_HOST, "VMS = {'stop_last': ['storage']}\n"), (POOL, "")],
                         ids=["one-host", "pool"])
def test_dry_run_reads_for_real_changes_nothing_and_prints_the_timeline(site_lab, scenario, extra):
    lab = site_lab(scenario, extra=extra + "MAIL = {'when': 'always'}\n")
    before = lab.site.store.read()
    result = lab.hgs("onbattery", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.calls("vm-list"), "a dry run reads the VMs for real"
    assert [c for c in lab.calls() if c[2] in CHANGING] == []
    after = lab.site.store.read()
    assert after["vms"] == before["vms"] and after["pool"] == before["pool"]
    assert all(h["power"] == "on" and h["enabled"] for h in after["hosts"].values())
    assert not (lab.site.workdir / "state" / "state.json").exists()
    assert "Dry run: the outage flow would do this" in result.stdout
    assert "group 1: clean shutdown of" in result.stdout and "worst case" in result.stdout
    assert "dry run: would run on" in result.stderr and "xe vm-shutdown uuid=" in result.stderr
    assert "outage (dry run): site down" in result.stdout


def test_onbattery_without_foreground_returns_at_once_and_the_flow_runs_detached(site_lab):
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:00:01", "shutdown_s": 5}],
                "vms": [{"name": "one", "shutdown_s": 10}]}
    lab = site_lab(scenario, extra="MAIL = {'when': 'never'}\n")
    start = time.monotonic()
    result = lab.hgs("onbattery", "-v")
    assert result.returncode == 0 and time.monotonic() - start < 2
    assert "started in the background" in result.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and lab.site.vm_states() != {"one": "halted"}:
        time.sleep(0.2)
    assert lab.site.vm_states() == {"one": "halted"}
    wait_until = time.monotonic() + 15
    while time.monotonic() < wait_until and "outage flow finished" not in lab.log_text():
        time.sleep(0.2)
    assert "outage flow finished: site down" in lab.log_text()


def test_doshutdown_dry_run_changes_nothing(site_lab):
    lab = site_lab(ONE_HOST, extra="MAIL = {'when': 'never'}\n")
    result = lab.hgs("doshutdown", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.calls("vm-list") and [c for c in lab.calls() if c[2] in CHANGING] == []
    assert "dry run: would run on xen1: xe vm-shutdown" in result.stderr and "--force" in result.stderr


def test_a_hardened_sshd_allowing_one_session_per_connection_still_takes_the_pool_down(site_lab):
    """MaxSessions 1 on every host (a hardening guide's setting): the batches, the power polls
    and the hosts' shutdowns through the master need more sessions than one connection allows.
    hgs opens more connections: every VM shuts down cleanly, every host-shutdown is sent through
    its first route, and no call is reported refused or not sent."""
    scenario = dict(POOL, vms=[{"name": f"vm{i:03d}", "host": ["master", "member1", "member2"][i % 3],
                                "shutdown_s": 30 + i % 40} for i in range(150)])
    lab = site_lab(scenario, extra="MAIL = {'when': 'never'}\n")
    for door in lab.site.doors.values():
        door.allow_sessions(1)
    result = lab.hgs("-v", "onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert not [argv for _, _, _, argv in lab.calls("vm-shutdown") if "--force" in argv]
    sent = [(where, lab.target(argv)) for _, where, command, argv in lab.changing_calls() if command == "host-shutdown"]
    assert sorted(sent) == [("master", "master"), ("master", "member1"), ("master", "member2")]
    log = result.stdout + result.stderr
    for words in ("not sent", "refused", "cannot open a channel", "cannot start the"):
        assert words not in log, words
    assert {h["name"]: h["power"] for h in lab.site.store.read()["hosts"].values()} == {
        "master": "off", "member1": "off", "member2": "off"}
