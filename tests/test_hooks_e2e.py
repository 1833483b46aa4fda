"""End to end with the real daemons: apcupsd (and NUT's upsd/upsmon/upssched) call the hooks
`hgs install` put in place; the site goes down and comes back; Postfix delivers the mails."""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from harness import NUT_DIR, free_port, port_open, require_binary, run_hgs, wait_for, write

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
    from daemons import RealApcupsd

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


def ensure_nut_user():
    """Debian's nut-client creates the system user 'nut' upsmon drops to; so does this, if missing."""
    if subprocess.run(["getent", "passwd", "nut"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/var/lib/nut",
                        "--shell", "/usr/sbin/nologin", "nut"], check=True)
    return pwd.getpwnam("nut").pw_uid, grp.getgrnam("nut").gr_gid


def as_nut(*argv):
    return subprocess.run(["setpriv", "--reuid", "nut", "--regid", "nut", "--init-groups", *argv],
                          capture_output=True, text=True, timeout=10)


class RealNutChain:
    """dummy-ups -> upsd -> upsmon -> upssched -> the command script `hgs install nut` wrote, as
    Debian runs NUT: upsmon drops to the user 'nut' (no RUN_AS_USER line: its built-in default),
    so NOTIFYCMD, upssched and the command script run as nut and reach hgs through sudo; the
    config files are root:nut 0640. The admin had a CMDSCRIPT and AT lines of their own."""

    def __init__(self, processes, final_delay_s=0):
        self.processes = processes
        self.uid, self.gid = ensure_nut_user()
        # under /tmp, not pytest's 0700 folder: the user nut must reach its files, as in /etc/nut
        self.folder = Path(tempfile.mkdtemp(prefix="hgs-nut-e2e-"))
        os.chown(self.folder, 0, self.gid)
        self.folder.chmod(0o750)
        self.port = free_port()
        self.state = self.folder / "state"  # as /run/nut: root:nut 0770
        self.state.mkdir()
        os.chown(self.state, 0, self.gid)
        self.state.chmod(0o770)
        self.dev = self.folder / "dummy.dev"
        self.set_status("OL", 100, 1800)
        self.halted = self.folder / "this-box-halted"
        self.their_log = self.state / "their-commands.log"
        self.sudoers = Path(f"/etc/sudoers.d/hgs-e2e-{os.getpid()}-{self.port}")  # no dot: sudo reads it
        self.conf(self.folder / "ups.conf", f"[dummy]\n  driver = dummy-ups\n  port = {self.dev}\n  mode = dummy-once\n"
                  "  pollinterval = 1\n")
        self.conf(self.folder / "upsd.conf", f"LISTEN 127.0.0.1 {self.port}\n")
        self.conf(self.folder / "upsd.users", '[monitor]\n  password = "pw"\n  upsmon primary\n')
        self.conf(self.folder / "upsmon.conf", textwrap.dedent(f"""\
            MONITOR dummy@127.0.0.1:{self.port} 1 monitor pw primary
            MINSUPPLIES 1
            POLLFREQ 1
            POLLFREQALERT 1
            DEADTIME 5
            FINALDELAY {final_delay_s}
            HOSTSYNC 1
            POWERDOWNFLAG {self.folder}/killpower
            NOTIFYCMD {NUT_DIR / "sbin" / "upssched"}
            NOTIFYFLAG ONBATT SYSLOG+WALL+EXEC
            NOTIFYFLAG COMMBAD SYSLOG+EXEC
            SHUTDOWNCMD "touch {self.halted}"
            """))
        # what this box would run to halt is a marker file: nothing may halt this machine
        write(self.folder / "their-cmd", f'#!/bin/sh\necho "$1 $(id -un)" >> {self.their_log}\n', 0o755)
        self.their_upssched = textwrap.dedent(f"""\
            # the admin's own, with AT lines: hgs's CMDSCRIPT must still come before every AT line
            CMDSCRIPT {self.folder}/their-cmd
            PIPEFN {self.state}/upssched.pipe
            LOCKFN {self.state}/upssched.lock
            AT ONBATT * EXECUTE their-onbatt
            AT ONLINE * EXECUTE their-online
            """)
        self.conf(self.folder / "upssched.conf", self.their_upssched)
        self.env = dict(os.environ, NUT_CONFPATH=str(self.folder), NUT_STATEPATH=str(self.state),
                        NUT_ALTPIDPATH=str(self.state))

    def conf(self, path, text):
        write(path, text, 0o640)
        os.chown(path, 0, self.gid)

    def install(self, config, *extra):
        return run_hgs("install", "nut", "--write", "--nut-dir", str(self.folder), "--config", str(config),
                       "--upssched", str(NUT_DIR / "sbin" / "upssched"), "--sudoers-file", str(self.sudoers), *extra)

    def start(self):
        lib = NUT_DIR / "lib" / "nut"
        self.processes.start([str(lib / "dummy-ups"), "-a", "dummy", "-u", "root", "-F"], self.folder / "dummy.out",
                             env=self.env)
        self.processes.start([str(lib / "upsd"), "-u", "root", "-F"], self.folder / "upsd.out", env=self.env)
        wait_for(lambda: port_open(self.port), 10, "upsd's port")
        wait_for(lambda: self.upsc("ups.status") not in (None, "WAIT"), 15, "upsd to see the dummy driver")
        # no -p, no -u, no RUN_AS_USER: upsmon drops to its built-in user, nut, as on Debian
        self.upsmon = self.processes.start([str(lib / "upsmon"), "-F"], self.folder / "upsmon.out", env=self.env)
        wait_for(lambda: self.unprivileged_upsmon(), 10, "upsmon's child running as nut")
        time.sleep(2)  # upsmon's first poll

    def unprivileged_upsmon(self):
        out = subprocess.run(["ps", "-o", "user=", "--ppid", str(self.upsmon.pid)], capture_output=True, text=True)
        return "nut" in out.stdout.split()

    def upsc(self, var):
        result = subprocess.run([str(NUT_DIR / "bin/upsc"), f"dummy@127.0.0.1:{self.port}", var],
                                capture_output=True, text=True, env=self.env, timeout=5)
        return result.stdout.strip() if result.returncode == 0 else None

    def set_status(self, status, charge, runtime_s):
        tmp = self.folder / "dummy.tmp"
        tmp.write_text(f"ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime_s}\n")
        os.replace(tmp, self.dev)

    def their_commands(self):
        return self.their_log.read_text().splitlines() if self.their_log.exists() else []

    def cleanup(self):
        self.sudoers.unlink(missing_ok=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def nut_chain(processes):
    for part in ("lib/nut/dummy-ups", "lib/nut/upsd", "lib/nut/upsmon", "sbin/upssched"):
        if not (NUT_DIR / part).exists():
            pytest.fail(f"NUT's {part} is missing under {NUT_DIR}: tests/run unpacks nut-server and nut-client")
    require_binary("sudo", "sudo")
    chains = []

    def make(**kwargs):
        chains.append(RealNutChain(processes, **kwargs))
        return chains[-1]

    yield make
    processes.stop_all()
    for chain in chains:
        chain.cleanup()


def _owner_mode(path):
    info = os.stat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_real_nut_as_debian_runs_it_a_whole_cycle_lowbatt_on_line_ignored_fsd_forces(site_lab, nut_chain, postfix):
    lab = site_lab(SCENARIO, ups_state="online", timings={"confirm_outage_s": 2, "restore_confirm_s": 2},
                   extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-nut-e2e]'}\n")
    chain = nut_chain(final_delay_s=15)  # upsmon's own SHUTDOWNCMD comes 15 s after an FSD notification
    lab.write_config(lab.timings, lab.extra, ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{chain.port}'")
    files = [chain.folder / "upsmon.conf", chain.folder / "upssched.conf"]
    assert [_owner_mode(f) for f in files] == [(0, chain.gid, 0o640)] * 2
    result = chain.install(lab.config)
    assert result.returncode == 0, result.stderr
    assert [_owner_mode(f) for f in files] == [(0, chain.gid, 0o640)] * 2  # upssched, as nut, still reads them
    assert as_nut("cat", str(lab.config)).returncode != 0  # the config stays root's alone
    assert "RUN_AS_USER" not in (chain.folder / "upsmon.conf").read_text()
    assert run_hgs("selftest", "-v", "--mail", "never", "--config", str(lab.config)).stdout.count(
        "ok    nut hooks:") == 1
    chain.start()

    chain.set_status("OB DISCHRG", 90, 1500)
    wait_log(lab, "outage flow finished: site down")
    assert lab.site.vm_states() == HALTED
    chain.set_status("OL CHRG", 90, 1500)
    wait_log(lab, "restore flow finished: site restored")
    assert lab.site.vm_states() == RUNNING
    postfix.wait_for_text("[hgs-nut-e2e] outage site down")
    postfix.wait_for_text("[hgs-nut-e2e] restore site restored")
    # the admin's own AT lines still reach their own script, run as nut
    wait_for(lambda: {"their-onbatt nut", "their-online nut"} <= set(chain.their_commands()), 10,
             "the admin's own commands")

    # LOWBATT with the UPS on line (upsmon notifies it on the LB flag alone): logged, nothing forced
    shutdowns = len(lab.calls("vm-shutdown"))
    chain.set_status("OL LB CHRG", 20, 300)
    wait_log(lab, "not critical; the event is logged and ignored", timeout_s=30)
    time.sleep(3)
    assert lab.site.vm_states() == RUNNING and len(lab.calls("vm-shutdown")) == shutdowns
    assert not chain.halted.exists()

    # FSD: hgs's FSD hook forces the site down at once, before upsmon's SHUTDOWNCMD (FINALDELAY
    # later: it runs 'hgs doshutdown' too) halts "this box"
    chain.set_status("FSD OL", 20, 300)
    wait_for(lambda: lab.site.vm_states() == HALTED, 30, "the VMs forced down")
    assert not chain.halted.exists()
    wait_for(lambda: chain.halted.exists(), 60, "upsmon's SHUTDOWNCMD")

    gone = chain.install(lab.config, "--uninstall")
    assert gone.returncode == 0, gone.stderr
    assert (chain.folder / "upssched.conf").read_text() == chain.their_upssched
    assert [_owner_mode(f) for f in files] == [(0, chain.gid, 0o640)] * 2
    assert not chain.sudoers.exists()


def test_nut_lowbatt_escalates_through_doshutdown(site_lab, nut_chain):
    slow = dict(SCENARIO, vms=[{"name": "slow", "host": "xen1", "shutdown_s": 1200},
                               {"name": "slow2", "host": "xen2", "shutdown_s": 1200}])
    lab = site_lab(slow, ups_state="online", timings={"confirm_outage_s": 60, "doshutdown_bound_s": 15},
                   extra="MAIL = {'when': 'never'}\n")
    chain = nut_chain()
    lab.write_config(lab.timings, lab.extra, ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{chain.port}'")
    assert chain.install(lab.config).returncode == 0
    chain.start()
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
