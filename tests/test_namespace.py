"""A host in a network namespace: it really stops answering ping and SSH when it powers off,
and a real Wake-on-LAN broadcast into its namespace brings it back (issue: restore flow)."""

import shutil
import subprocess

import pytest

from harness import require_binary


@pytest.fixture
def ns_lab(site_lab):
    require_binary("/usr/sbin/ip", "iproute2")
    require_binary("ping", "iputils-ping")

    def make(scenario, **kwargs):
        return site_lab(scenario, front_door="netns", **kwargs)

    return make


def pings(address):
    return subprocess.run([shutil.which("ping"), "-c", "1", "-W", "1", address], capture_output=True).returncode == 0


SCENARIO = {"time_scale": 60,
            "hosts": [{"name": "xen1", "mac": "02:00:00:00:0a:01", "shutdown_s": 20, "boot_s": 60,
                       "xapi_start_s": 300}],
            "vms": [{"name": "db", "order": 1, "start_delay": 60}, {"name": "web", "order": 2},
                    {"name": "was-halted", "power_state": "halted"}]}


def test_outage_then_restore_with_real_ping_real_sshd_and_real_wake_on_lan(ns_lab):
    lab = ns_lab(SCENARIO, extra="MAIL = {'when': 'never'}\n")
    door = lab.site.doors["xen1"]
    assert pings(door.address)
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "xen1: shut down, confirmed down" in result.stdout
    assert not pings(door.address)  # really gone: no reply in its namespace
    lab.ups.set_state("online")
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout + result.stderr
    assert door.wol_packets() == [("woke", "02:00:00:00:0a:01")]  # received inside the namespace
    assert pings(door.address)
    assert "xapi is still booting (HOST_STILL_BOOTING): waiting" in lab.log_text()
    assert lab.site.vm_states() == {"db": "running", "web": "running", "was-halted": "halted"}
    assert lab.state_file()["phase"] == "idle"
    starts = {lab.target(argv): t for t, _, _, argv in lab.calls("vm-start")}
    assert starts["web"] - starts["db"] >= 1.0  # db's start-delay first


def test_first_magic_packet_lost_in_the_namespace_is_resent(ns_lab):
    lab = ns_lab(SCENARIO, wol_drop_first=1, extra="MAIL = {'when': 'never'}\n")
    assert lab.hgs("onbattery", "--foreground").returncode == 0
    lab.ups.set_state("online")
    result = lab.hgs("offbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert [kind for kind, _ in lab.site.doors["xen1"].wol_packets()] == ["dropped", "woke"]
    assert lab.site.vm_states()["web"] == "running"


def test_dry_run_restore_sends_no_packet_into_the_namespace(ns_lab):
    lab = ns_lab(SCENARIO, extra="MAIL = {'when': 'never'}\n")
    assert lab.hgs("onbattery", "--foreground").returncode == 0
    lab.ups.set_state("online")
    result = lab.hgs("offbattery", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.site.doors["xen1"].wol_packets() == []
    assert not pings(lab.site.doors["xen1"].address)


def test_namespaces_are_removed_after_the_lab(site_lab, tmp_path):
    from harness import SiteLab

    lab = SiteLab(tmp_path / "solo", SCENARIO, front_door="netns")
    netns = lab.site.doors["xen1"].netns
    assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    lab.stop()
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "10.254.0.0/16" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
