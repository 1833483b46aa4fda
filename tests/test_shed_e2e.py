"""Shedding and suspend end to end: real OpenSSH fronting the simulated xe, the simulated UPS
as apcupsd NIS, `hgs onbattery --foreground` / `hgs offbattery --foreground` as a hook runs them."""

import subprocess
import time

from harness import HGS, wait_for

SITE = {
    "time_scale": 60,
    "pool": {"name": "pool", "ha_enabled": True},
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:03:01", "shutdown_s": 20, "boot_s": 30,
               "xapi_start_s": 30}],
    "vms": [{"name": "db", "shutdown_s": 20, "start_s": 20, "order": 1},
            {"name": "web", "shutdown_s": 15, "start_s": 20},
            {"name": "build", "shutdown_s": 30, "start_s": 20},
            {"name": "ci", "shutdown_s": 20, "start_s": 20}],
}


def test_shed_vms_go_down_at_once_and_come_back_when_the_power_returns_nothing_else_touched(site_lab):
    lab = site_lab(SITE, timings={"main_trigger": "runtime"},
                   extra="VMS = {'shed': {'vms': ['build', 'ci'], 'at': 'confirmed'}}\nMAIL = {'when': 'never'}\n")
    hgs = subprocess.Popen([HGS, "--config", str(lab.config), "onbattery", "--foreground"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: lab.site.vm_states()["build"] == "halted" and lab.site.vm_states()["ci"] == "halted",
                 30, "the shed VMs halted")
        assert lab.site.vm_states()["db"] == "running" and lab.site.vm_states()["web"] == "running"
        time.sleep(0.5)  # the flow waits for the runtime trigger (1800 s of battery): nothing else happens
        assert lab.state_file()["phase"] == "shutting_down"
        lab.ups.set_state("online")
        out, _ = hgs.communicate(timeout=60)
    finally:
        if hgs.poll() is None:
            hgs.kill()
            hgs.wait()
    assert hgs.returncode == 0, out
    assert "power back before the main shutdown: the shed VMs were started again" in out
    assert lab.site.vm_states() == dict.fromkeys(["db", "web", "build", "ci"], "running")
    changed = sorted((c[2], lab.target(c[3])) for c in lab.changing_calls())
    assert changed == [("vm-shutdown", "build"), ("vm-shutdown", "ci"), ("vm-start", "build"), ("vm-start", "ci")]
    assert lab.site.store.read()["pool"]["ha_enabled"] is True  # HA never touched
    assert lab.state_file()["phase"] == "idle"


def test_a_suspended_vm_is_resumed_and_a_failed_suspend_is_shut_down_then_started(site_lab):
    lab = site_lab(SITE, extra="VMS = {'suspend': ['db', 'ci']}\nMAIL = {'when': 'never'}\n")
    lab.site.store.set_vm("ci", suspend_fails="VM_NO_SUSPEND_SR")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.vm_states() == {"db": "suspended", "web": "halted", "build": "halted", "ci": "halted"}
    assert "db: suspended in" in result.stdout
    assert "ci: clean in" in result.stdout and "suspend failed: VM_NO_SUSPEND_SR" in result.stdout
    assert [h["power"] for h in lab.site.store.read()["hosts"].values()] == ["off"]
    since = time.time()
    lab.ups.set_state("online")
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.vm_states() == dict.fromkeys(["db", "web", "build", "ci"], "running")
    after = [(c[2], lab.target(c[3])) for c in lab.changing_calls() if c[0] > since and c[2].startswith("vm-")]
    assert ("vm-resume", "db") in after and ("vm-start", "db") not in after
    assert ("vm-start", "ci") in after
    assert "db: resumed in" in result.stdout


def test_dry_run_prints_when_each_stage_would_start_and_changes_nothing(site_lab):
    lab = site_lab(SITE, timings={"main_trigger": "runtime"},
                   extra="VMS = {'shed': [{'vms': ['build'], 'at': 'confirmed'}, "
                         "{'vms': ['ci'], 'at': {'runtime_s': 600}}]}\nMAIL = {'when': 'never'}\n")
    result = lab.hgs("onbattery", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "stages, from the power failure, at the present load (UPS runtime 1800 s" in out
    assert "shed build (as soon as the outage is confirmed)" in out
    assert "~+ 1200 s  shed ci (at 600 s of runtime left)" in out
    assert "main shutdown, when runtime left falls to 144 s" in out, out  # 2 groups x (5 + 3 s) + 1 host stage x 8 s + 120 s
    assert lab.changing_calls() == []
    assert set(lab.site.vm_states().values()) == {"running"}
