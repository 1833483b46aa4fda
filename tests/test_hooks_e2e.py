"""End to end with the real daemons: apcupsd (and NUT's upsd/upsmon/upssched) call the hooks
`hgs install` put in place; the site goes down and comes back; Postfix delivers the mails."""

import os
import subprocess
import textwrap
import time

import pytest

from lab import NUT_DIR, free_port, port_open, run_hgs, wait_for, write

SCENARIO = {
    "time_scale": 60,
    "pool": {"name": "pool", "ha_enabled": True},
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:0b:01", "shutdown_s": 20, "boot_s": 60,
               "xapi_start_s": 60},
              {"name": "xen2", "mac": "02:00:00:00:0b:02", "shutdown_s": 20, "boot_s": 60, "xapi_start_s": 60}],
    "vms": [{"name": "db", "host": "xen1", "order": 1}, {"name": "web", "host": "xen2", "order": 2},
            {"name": "notools", "host": "xen2", "tools": False}, {"name": "spare", "power_state": "halted"}],
}
RUNNING = {"db": "running", "web": "running", "notools": "running", "spare": "halted"}
HALTED = {name: "halted" for name in RUNNING}


def wait_log(lab, text, timeout_s=60):
    log = lab.site.workdir / "hgs.log"
    return wait_for(lambda: log.exists() and text in log.read_text(), timeout_s, f"{text!r} in the hgs log")


def test_real_apcupsd_calls_the_installed_hooks_for_a_whole_outage_and_restore(site_lab, tmp_path, processes,
                                                                                postfix):
    from conftest import RealApcupsd

    lab = site_lab(SCENARIO, ups_state="online", timings={"confirm_outage_s": 2, "restore_confirm_s": 2},
                   extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-apcupsd-e2e]'}\n")
    folder = tmp_path / "apcupsd"
    folder.mkdir()
    apc = RealApcupsd(folder, processes, master_port=lab.nis.port, stock_apccontrol=True)
    lab.write_config(lab.timings, lab.extra, ups=f"'daemon': 'apcupsd', 'address': '127.0.0.1:{apc.nis_port}'")
    result = run_hgs("install", "apcupsd", "--scriptdir", str(apc.scripts), "--config", str(lab.config))
    assert result.returncode == 0, result.stderr
    try:
        wait_for(lambda: "ONLINE" in (subprocess.run(["apcaccess", "-h", f"127.0.0.1:{apc.nis_port}", "status"],
                                                     capture_output=True, text=True).stdout), 15, "apcupsd on line")
        lab.ups.set_state("onbatt")
        wait_log(lab, "outage flow finished: site down")
        assert lab.site.vm_states() == HALTED
        assert "onbattery" in apc.events.read_text().split()
        lab.ups.set_state("online")
        wait_log(lab, "restore flow finished: site restored")
        assert lab.site.vm_states() == RUNNING
        assert "offbattery" in apc.events.read_text().split()
        assert lab.site.store.read()["pool"]["ha_enabled"] is True
        postfix.wait_for_text("[hgs-apcupsd-e2e] outage site down")
        postfix.wait_for_text("[hgs-apcupsd-e2e] restore site restored")
    finally:
        processes.stop(apc.proc)
        apc.stop()


class RealNutChain:
    """dummy-ups -> upsd -> upsmon -> upssched -> the command script `hgs install nut` wrote."""

    def __init__(self, folder, processes, config):
        self.folder, self.processes = folder, processes
        self.port = free_port()
        state = folder / "state"
        state.mkdir(mode=0o700)
        self.dev = folder / "dummy.dev"
        self.set_status("OL", 100, 1800)
        self.halted = folder / "this-box-halted"
        write(folder / "ups.conf", f"[dummy]\n  driver = dummy-ups\n  port = {self.dev}\n  mode = dummy-once\n"
              "  pollinterval = 1\n", 0o600)
        write(folder / "upsd.conf", f"LISTEN 127.0.0.1 {self.port}\n", 0o600)
        write(folder / "upsd.users", '[monitor]\n  password = "pw"\n  upsmon primary\n', 0o600)
        write(folder / "upsmon.conf", textwrap.dedent(f"""\
            RUN_AS_USER root
            MONITOR dummy@127.0.0.1:{self.port} 1 monitor pw primary
            MINSUPPLIES 1
            POLLFREQ 1
            POLLFREQALERT 1
            DEADTIME 5
            FINALDELAY 0
            HOSTSYNC 1
            POWERDOWNFLAG {folder}/killpower
            SHUTDOWNCMD "/bin/true"
            """), 0o600)
        # what this box would run to halt is replaced by a marker file: nothing may halt this machine
        result = run_hgs("install", "nut", "--write", "--nut-dir", str(folder), "--config", str(config),
                         "--upssched", str(NUT_DIR / "sbin" / "upssched"),
                         "--shutdown-command", f"touch {self.halted}")
        assert result.returncode == 0, result.stderr
        text = (folder / "upssched.conf").read_text().replace("/run/nut/", f"{state}/")
        write(folder / "upssched.conf", text, 0o600)
        self.env = dict(os.environ, NUT_CONFPATH=str(folder), NUT_STATEPATH=str(state), NUT_ALTPIDPATH=str(state))
        lib = NUT_DIR / "lib" / "nut"
        processes.start([str(lib / "dummy-ups"), "-a", "dummy", "-u", "root", "-F"], folder / "dummy.out", env=self.env)
        processes.start([str(lib / "upsd"), "-u", "root", "-F"], folder / "upsd.out", env=self.env)
        wait_for(lambda: port_open(self.port), 10, "upsd's port")
        wait_for(lambda: self.upsc("ups.status") not in (None, "WAIT"), 15, "upsd to see the dummy driver")
        self.upsmon = processes.start([str(lib / "upsmon"), "-p", "-F"], folder / "upsmon.out", env=self.env)
        time.sleep(2)  # upsmon's first poll

    def upsc(self, var):
        result = subprocess.run([str(NUT_DIR / "bin/upsc"), f"dummy@127.0.0.1:{self.port}", var],
                                capture_output=True, text=True, env=self.env, timeout=5)
        return result.stdout.strip() if result.returncode == 0 else None

    def set_status(self, status, charge, runtime_s):
        tmp = self.folder / "dummy.tmp"
        tmp.write_text(f"ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime_s}\n")
        os.replace(tmp, self.dev)


@pytest.fixture
def nut_chain(tmp_path, processes):
    for part in ("lib/nut/dummy-ups", "lib/nut/upsd", "lib/nut/upsmon", "sbin/upssched"):
        if not (NUT_DIR / part).exists():
            pytest.fail(f"NUT's {part} is missing under {NUT_DIR}: tests/run unpacks nut-server and nut-client")

    def make(config):
        folder = tmp_path / "nutchain"
        folder.mkdir()
        return RealNutChain(folder, processes, config)

    return make


def test_real_nut_chain_runs_a_whole_cycle_through_upssched(site_lab, nut_chain, postfix):
    lab = site_lab(SCENARIO, ups_state="online", timings={"confirm_outage_s": 2, "restore_confirm_s": 2},
                   extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-nut-e2e]'}\n")
    chain = nut_chain(lab.config)
    lab.write_config(lab.timings, lab.extra, ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{chain.port}'")
    chain.set_status("OB DISCHRG", 90, 1500)
    wait_log(lab, "outage flow finished: site down")
    assert lab.site.vm_states() == HALTED
    chain.set_status("OL CHRG", 90, 1500)
    wait_log(lab, "restore flow finished: site restored")
    assert lab.site.vm_states() == RUNNING
    postfix.wait_for_text("[hgs-nut-e2e] outage site down")
    postfix.wait_for_text("[hgs-nut-e2e] restore site restored")


def test_nut_lowbatt_escalates_through_doshutdown(site_lab, nut_chain):
    slow = dict(SCENARIO, vms=[{"name": "slow", "host": "xen1", "shutdown_s": 1200},
                               {"name": "slow2", "host": "xen2", "shutdown_s": 1200}])
    lab = site_lab(slow, ups_state="online", timings={"confirm_outage_s": 60, "doshutdown_bound_s": 15},
                   extra="MAIL = {'when': 'never'}\n")
    chain = nut_chain(lab.config)
    lab.write_config(lab.timings, lab.extra, ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{chain.port}'")
    chain.set_status("OB DISCHRG", 30, 600)
    wait_log(lab, "confirming the outage")
    started = time.monotonic()
    chain.set_status("OB DISCHRG LB", 4, 60)
    wait_for(lambda: chain.halted.exists(), 40, "upsmon's SHUTDOWNCMD (hgs doshutdown, then the halt marker)")
    assert time.monotonic() - started < 40
    assert lab.site.vm_states() == {"slow": "halted", "slow2": "halted"}
    forced = {lab.target(argv) for _, _, _, argv in lab.calls("vm-shutdown") if "--force" in argv}
    assert forced == {"slow", "slow2"}
    states = lab.site.store.read()["hosts"]
    assert all(h["power"] == "off" for h in states.values())
