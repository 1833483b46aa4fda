"""The restore flow end to end: real sshd fronting the simulated xe, real Wake-on-LAN packets
to a listener (loopback here; a network namespace host in test_namespace.py)."""

import time

from hgs.sim.xe import CHANGING

POOL = {
    "time_scale": 60,
    "pool": {"name": "pool", "ha_enabled": True},
    "hosts": [{"name": "master", "master": True, "mac": "02:00:00:00:02:01", "shutdown_s": 20, "boot_s": 90,
               "xapi_start_s": 90},
              {"name": "member", "mac": "02:00:00:00:02:02", "shutdown_s": 20, "boot_s": 60, "xapi_start_s": 60}],
    "vms": [{"name": "db", "order": 1, "start_delay": 90, "host": "master", "start_s": 30},
            {"name": "web1", "order": 2, "host": "member", "start_s": 20},
            {"name": "web2", "order": 2, "host": "master", "start_s": 20},
            {"name": "was-halted", "power_state": "halted"}],
}


def outage_then_power_back(lab):
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(lab.site.vm_states().values()) == {"halted"}
    lab.ups.set_state("online")
    return time.time()


def test_restore_after_an_outage_wakes_master_first_starts_exactly_the_snapshot_in_order(site_lab, postfix):
    lab = site_lab(POOL, extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-restore-test]'}\n")
    since = outage_then_power_back(lab)
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.vm_states() == {"db": "running", "web1": "running", "web2": "running", "was-halted": "halted"}
    woken = [mac for _, mac in lab.site.wol.received]
    assert woken == ["02:00:00:02:01", "02:00:00:00:02:02"][:0] or woken[0] == "02:00:00:00:02:01"
    assert sorted(woken) == ["02:00:00:00:02:01", "02:00:00:00:02:02"]
    starts = [(t, lab.target(argv)) for t, _, command, argv in lab.calls("vm-start") if t > since]
    db_at = [t for t, name in starts if name == "db"][0]
    web_at = [t for t, name in starts if name.startswith("web")]
    assert len(web_at) == 2 and min(web_at) - db_at >= 1.4  # db's start-delay (90 s / 60) after db's start
    power_ups = {name: t for t, name, up in lab.site.power_log if up and t > since}
    assert power_ups["master"] < power_ups["member"]
    assert db_at > max(power_ups.values())  # VMs after their hosts
    assert "xapi is still booting (HOST_STILL_BOOTING): waiting" in lab.log_text()
    site = lab.site.store.read()
    assert site["pool"]["ha_enabled"] is True
    assert all(h["power"] == "on" and h["enabled"] for h in site["hosts"].values())
    assert lab.state_file()["phase"] == "idle" and lab.state_file()["snapshot"] is None
    mail = postfix.wait_for_text("[hgs-restore-test] restore site restored")
    for line in ("db: started in", "web1: started in", "master: up in", "pool HA turned back on"):
        assert line in mail, line


def test_ha_comes_back_on_when_the_heartbeat_sr_was_not_learned(site_lab):
    import json

    lab = site_lab(POOL, extra="MAIL = {'when': 'never'}\n")
    since = outage_then_power_back(lab)
    path = lab.site.workdir / "state" / "state.json"
    state = json.loads(path.read_text())
    for pool in state["snapshot"]["pools"].values():
        pool["ha_srs"] = []  # the statefile read failed during the outage
    path.write_text(json.dumps(state))
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [argv for t, _, _, argv in lab.calls("pool-ha-enable") if t > since] == [["pool-ha-enable"]]
    assert lab.site.store.read()["pool"]["ha_enabled"] is True
    assert "pool HA turned back on (statefile SR picked by xapi)" in result.stdout


def test_a_lost_first_wake_on_lan_packet_is_resent_and_the_host_comes_back(site_lab):
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:03:01", "shutdown_s": 10,
                                             "boot_s": 30, "xapi_start_s": 30}],
                "vms": [{"name": "one"}]}
    lab = site_lab(scenario, wol_drop_first=1, extra="MAIL = {'when': 'never'}\n")
    outage_then_power_back(lab)
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert len(lab.site.wol.dropped) == 1 and len(lab.site.wol.received) == 1
    assert lab.site.vm_states() == {"one": "running"}


def test_a_host_that_never_boots_fails_clearly_keeps_the_state_and_a_later_attempt_completes(site_lab, postfix):
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:04:01", "shutdown_s": 10,
                                             "boot_s": 30, "xapi_start_s": 30}],
                "vms": [{"name": "one"}, {"name": "two"}]}
    lab = site_lab(scenario, wol_drop_first=10_000, timings={"host_boot_timeout_s": 4, "wol_resend_interval_s": 1},
                   extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-noboot-test]'}\n")
    outage_then_power_back(lab)
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 1
    assert "xen1: DID NOT BOOT" in result.stdout
    assert len(lab.site.wol.dropped) >= 4  # resent every second until the 4 s deadline
    assert lab.state_file()["phase"] == "site_down"
    assert sorted(v["name"] for v in lab.state_file()["snapshot"]["vms"].values()) == ["one", "two"]
    mail = postfix.wait_for_text("[hgs-noboot-test] restore incomplete")
    assert "FAILED" in mail and "DID NOT BOOT" in mail
    lab.site.wol.drop_first = 0  # the host's NIC works again
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert lab.site.vm_states() == {"one": "running", "two": "running"}
    assert lab.state_file()["phase"] == "idle"


def test_power_out_again_mid_restore_stops_it_and_the_next_outage_forgets_nothing(site_lab):
    lab = site_lab(POOL, extra="MAIL = {'when': 'never'}\n")
    since = outage_then_power_back(lab)

    def fail_again_after_first_start():
        while not [c for c in lab.calls("vm-start") if c[0] > since]:
            time.sleep(0.02)
        lab.ups.set_state("onbatt")

    import threading

    threading.Thread(target=fail_again_after_first_start, daemon=True).start()
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert "stopped: power failed again" in result.stdout
    assert lab.site.vm_states()["web1"] == "halted"  # order group 2 never started
    state = lab.state_file()
    assert state["phase"] == "site_down"
    assert sorted(v["name"] for v in state["snapshot"]["vms"].values()) == ["db", "web1", "web2"]
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert set(lab.site.vm_states().values()) == {"halted"}
    assert sorted(v["name"] for v in lab.state_file()["snapshot"]["vms"].values()) == ["db", "web1", "web2"]
    lab.ups.set_state("online")
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert lab.site.vm_states() == {"db": "running", "web1": "running", "web2": "running", "was-halted": "halted"}


def test_a_vm_gone_since_the_outage_is_reported_not_fatal(site_lab):
    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:05:01", "shutdown_s": 10,
                                             "boot_s": 30, "xapi_start_s": 30}],
                "vms": [{"name": "keep"}, {"name": "deleted"}]}
    lab = site_lab(scenario, extra="MAIL = {'when': 'never'}\n")
    outage_then_power_back(lab)
    with lab.site.store.transaction() as state:
        gone = next(u for u, v in state["vms"].items() if v["name"] == "deleted")
        del state["vms"][gone]
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert "deleted: no longer exists" in result.stdout
    assert lab.site.vm_states() == {"keep": "running"}


def test_restore_dry_run_sends_no_packet_and_changes_nothing(site_lab):
    lab = site_lab(POOL, extra="MAIL = {'when': 'never'}\n")
    since = outage_then_power_back(lab)
    before = lab.site.store.read()
    result = lab.hgs("offbattery", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.wol.received == [] and lab.site.wol.dropped == []
    assert [c for c in lab.calls() if c[0] > since and c[2] in CHANGING] == []
    assert lab.site.store.read()["vms"] == before["vms"]
    assert lab.state_file()["phase"] == "site_down"
    assert "Dry run: the restore flow would do this:" in result.stdout
    assert "start order group 1: db; then wait 2 s (start-delay)" in result.stdout  # xe: 90 s simulated = 2 s
    assert "db: started" in result.stdout and "web1: started" in result.stdout
    assert "dry run: would send Wake-on-LAN for master" in result.stderr


def test_offbattery_with_nothing_shut_down_does_nothing(site_lab):
    lab = site_lab(POOL, ups_state="online", extra="MAIL = {'when': 'never'}\n")
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0
    assert "nothing was shut down by hgs" in result.stdout
    assert lab.calls() == [] and lab.site.wol.received == []


def test_doshutdown_mid_restore_stops_it_and_forces_the_woken_site_down_within_its_bound(site_lab):
    import subprocess

    from harness import HGS

    lab = site_lab(POOL, timings={"doshutdown_bound_s": 20}, extra="MAIL = {'when': 'never'}\n")
    since = outage_then_power_back(lab)
    restore = subprocess.Popen([HGS, "--config", str(lab.config), "offbattery", "--foreground"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not [c for c in lab.calls("vm-start") if c[0] > since]:
            time.sleep(0.02)
        assert [c for c in lab.calls("vm-start") if c[0] > since], "the restore should be starting VMs"
        start = time.monotonic()
        result = lab.hgs("doshutdown")  # during db's start-delay: the restore is waiting
        took = time.monotonic() - start
        out, _ = restore.communicate(timeout=30)
    finally:
        if restore.poll() is None:
            restore.kill()
            restore.wait()
    assert result.returncode == 0, result.stdout + result.stderr
    assert took < 20
    assert "stopped: power failed again" in out and "hgs doshutdown" in out
    assert lab.site.vm_states()["web1"] == "halted"  # order group 2 never started
    assert set(lab.site.vm_states().values()) == {"halted"}  # db, started before, forced down again
    assert {h["name"]: h["power"] for h in lab.site.store.read()["hosts"].values()} == {"master": "off",
                                                                                         "member": "off"}
    state = lab.state_file()
    assert state["phase"] == "site_down"
    assert sorted(v["name"] for v in state["snapshot"]["vms"].values()) == ["db", "web1", "web2"]


def test_sigterm_stops_a_restore_at_once_and_keeps_its_snapshot(site_lab):
    import signal
    import subprocess

    from harness import HGS

    scenario = {"time_scale": 60, "hosts": [{"name": "xen1", "mac": "02:00:00:00:04:02", "shutdown_s": 10,
                                             "boot_s": 30, "xapi_start_s": 30}],
                "vms": [{"name": "one"}]}
    lab = site_lab(scenario, wol_drop_first=10_000, timings={"host_boot_timeout_s": 600, "wol_resend_interval_s": 1},
                   extra="MAIL = {'when': 'never'}\n")
    outage_then_power_back(lab)
    flow = subprocess.Popen([HGS, "--config", str(lab.config), "offbattery", "--foreground"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(lab.site.wol.dropped) < 2 and time.monotonic() < deadline:  # it waits for the boot now
            time.sleep(0.05)
        assert len(lab.site.wol.dropped) >= 2
        flow.send_signal(signal.SIGTERM)  # a stopped unit, or this box shutting down
        sent = time.monotonic()
        out, _ = flow.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
    assert took < 5, (took, out)
    assert "SIGTERM" in out and "stopped" in out, out
    assert lab.state_file()["phase"] == "site_down"
    assert [v["name"] for v in lab.state_file()["snapshot"]["vms"].values()] == ["one"]
