"""Power races, driven through the hooks as apccontrol/upssched call them (`hgs onbattery`,
`hgs offbattery`: record the event, start the flow detached, return at once). One flow at a
time; every race ends with the site in the right state and the snapshot intact."""

import collections
import time

from hgs.sim.xe import CHANGING
from harness import wait_for

SCENARIO = {
    "time_scale": 60,
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0c:01", "shutdown_s": 20, "boot_s": 60,
               "xapi_start_s": 60}],
    "vms": [{"name": "db", "order": 1, "shutdown_s": 60, "start_s": 40},
            {"name": "web", "order": 2, "shutdown_s": 90, "start_s": 30},
            {"name": "app", "order": 2, "shutdown_s": 60, "start_s": 30},
            {"name": "spare", "power_state": "halted"}],
}
UP = {"db": "running", "web": "running", "app": "running", "spare": "halted"}
DOWN = {name: "halted" for name in UP}


def finished(lab):
    """Returns the 'X flow finished: RESULT' lines of the log, in order."""
    log = lab.site.workdir / "hgs.log"
    if not log.exists():
        return []
    return [line.split("INFO    ", 1)[-1].split("ERROR   ", 1)[-1] for line in log.read_text().splitlines()
            if "flow finished" in line]


def wait_finished(lab, count, timeout_s=60):
    return wait_for(lambda: len(finished(lab)) >= count and finished(lab), timeout_s, f"{count} finished flows")


def hook(lab, event):
    started = time.monotonic()
    result = lab.hgs(event)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 2, "a hook must return at once"


def make(site_lab, **timings):
    base = {"confirm_outage_s": 3, "restore_confirm_s": 1}
    base.update(timings)
    return site_lab(SCENARIO, ups_state="online", timings=base, extra="MAIL = {'when': 'never'}\n")


def test_power_back_during_confirmation_stops_without_a_single_change(site_lab):
    lab = make(site_lab)
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    time.sleep(1.0)
    lab.ups.set_state("online")
    hook(lab, "offbattery")
    lines = wait_finished(lab, 2)
    assert "outage flow finished: stopped: power back during confirmation" in lines
    assert "restore flow finished: nothing to do" in lines
    assert [c for c in lab.calls() if c[2] in CHANGING] == []
    assert lab.site.vm_states() == UP


def test_power_back_mid_shutdown_the_outage_completes_then_the_restore_runs(site_lab):
    lab = make(site_lab)
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    wait_for(lambda: lab.calls("vm-shutdown"), 20, "the VM shutdowns to begin")
    lab.ups.set_state("online")
    hook(lab, "offbattery")
    lines = wait_finished(lab, 2, timeout_s=90)
    assert lines[:2] == ["outage flow finished: site down", "restore flow finished: site restored"]
    assert lab.site.vm_states() == UP
    assert lab.state_file()["phase"] == "idle"


def test_power_out_again_mid_restore_the_outage_takes_over_and_forgets_nothing(site_lab):
    lab = make(site_lab)
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    wait_finished(lab, 1)
    assert lab.site.vm_states() == DOWN
    lab.ups.set_state("online")
    since = time.time()
    hook(lab, "offbattery")
    wait_for(lambda: [c for c in lab.calls("vm-start") if c[0] > since], 30, "the restore to start a VM")
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    lines = wait_finished(lab, 3, timeout_s=90)
    assert lines[1] == "restore flow finished: stopped: power failed again"
    assert lines[2] == "outage flow finished: site down"
    assert lab.site.vm_states() == DOWN
    snapshot = lab.state_file()["snapshot"]
    assert sorted(v["name"] for v in snapshot["vms"].values()) == ["app", "db", "web"]
    lab.ups.set_state("online")
    hook(lab, "offbattery")
    assert wait_finished(lab, 4, timeout_s=90)[3] == "restore flow finished: site restored"
    assert lab.site.vm_states() == UP


def test_the_same_event_twice_runs_one_flow(site_lab):
    lab = make(site_lab)
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    hook(lab, "onbattery")
    wait_finished(lab, 1)
    time.sleep(1.0)
    assert finished(lab) == ["outage flow finished: site down"]
    assert "this onbattery event merges into it" in lab.log_text()
    per_vm = collections.Counter(lab.target(argv) for _, _, _, argv in lab.calls("vm-shutdown"))
    assert per_vm == {"db": 1, "web": 1, "app": 1}
    assert lab.site.vm_states() == DOWN


def test_twenty_flaps_in_a_minute_never_shut_down_then_a_real_outage_does(site_lab):
    lab = make(site_lab, confirm_outage_s=3)
    for _ in range(20):
        lab.ups.set_state("onbatt")
        hook(lab, "onbattery")
        time.sleep(0.6)
        lab.ups.set_state("online")
        hook(lab, "offbattery")
        time.sleep(0.6)
    time.sleep(1.0)  # the last hooks' detached flows start
    wait_for(lambda: not _flows_running(lab), 30, "the flows the flaps started to end")
    assert [c for c in lab.calls() if c[2] in CHANGING] == [], "no flap outlasted the confirmation window"
    assert lab.site.vm_states() == UP
    assert not any(line == "outage flow finished: site down" for line in finished(lab))
    lab.ups.set_state("onbatt")
    hook(lab, "onbattery")
    wait_for(lambda: "outage flow finished: site down" in finished(lab), 60, "the real outage to shut the site down")
    assert lab.site.vm_states() == DOWN
    assert sorted(v["name"] for v in lab.state_file()["snapshot"]["vms"].values()) == ["app", "db", "web"]


def _flows_running(lab):
    from hgs.box.lock import SiteLock

    lock = SiteLock(lab.site.workdir / "lock")
    if lock.acquire():
        lock.release()
        return False
    return True
