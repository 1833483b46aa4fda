"""Real UPS daemons for the end-to-end tests: apcupsd and NUT's upsd, run on loopback ports.

Kept out of conftest.py so a test module can import them by a name no other folder shares.
"""

import os
import re
import subprocess
import textwrap

import pytest

from hgs.sim.ups import NisServer, SimUps
from harness import NUT_DIR, free_port, port_open, require_binary, wait_for, write


class RealApcupsd:
    """A real apcupsd in net mode, fed by a SimUps NIS master; read through its own NIS port.

    ``stock_apccontrol`` runs Debian's own apccontrol (which runs SCRIPTDIR/EVENT scripts),
    with every line that could halt this machine or kill the UPS replaced by a harmless one.
    """

    def __init__(self, folder, processes, master_port=None, stock_apccontrol=False):
        self.folder = folder
        self.ups = SimUps(name="labups")
        self.master = NisServer(self.ups) if master_port is None else None
        master_port = master_port or self.master.port
        self.nis_port = free_port()
        for sub in ("scripts", "pwrfail", "nologin"):
            (folder / sub).mkdir()
        self.events = folder / "events.log"
        self.scripts = folder / "scripts"
        if stock_apccontrol:
            text = open("/etc/apcupsd/apccontrol").read()
            for name, value in (("SCRIPTDIR", str(self.scripts)), ("SHUTDOWN", "/bin/true"), ("WALL", "cat"),
                                ("APCUPSD", "/bin/true"), ("APCPID", str(folder / "apcupsd.pid"))):
                text = re.sub(rf"^{name}=.*$", f"{name}={value}", text, count=1, flags=re.M)
            assert "SHUTDOWN=/bin/true" in text and "APCUPSD=/bin/true" in text
            text = text.replace('case "$1" in', f'echo "$1" >> {self.events}\ncase "$1" in', 1)
            write(self.scripts / "apccontrol", text, 0o755)
        else:
            # An apccontrol of our own that only records events: nothing may halt this machine.
            write(self.scripts / "apccontrol", f'#!/bin/sh\necho "$1" >> {self.events}\n', 0o755)
        conf = write(folder / "apcupsd.conf", textwrap.dedent(f"""\
            ## apcupsd.conf v1.1 ##
            UPSNAME labups
            UPSCABLE ether
            UPSTYPE net
            DEVICE 127.0.0.1:{master_port}
            POLLTIME 1
            LOCKFILE {folder}/lock
            SCRIPTDIR {folder}/scripts
            PWRFAILDIR {folder}/pwrfail
            NOLOGINDIR {folder}/nologin
            EVENTSFILE {folder}/events
            STATFILE {folder}/status
            ONBATTERYDELAY 3
            BATTERYLEVEL 5
            MINUTES 3
            TIMEOUT 0
            NETSERVER on
            NISIP 127.0.0.1
            NISPORT {self.nis_port}
            """))
        apcupsd = require_binary("/sbin/apcupsd", "apcupsd")
        self.proc = processes.start([apcupsd, "-b", "-f", str(conf), "-P", str(folder / "apcupsd.pid")],
                                    folder / "apcupsd.out")
        wait_for(lambda: port_open(self.nis_port), 10, "apcupsd's NIS port")

    def stop(self):
        if self.master is not None:
            self.master.stop()


class RealNut:
    """A real NUT upsd serving a dummy-ups driver; ``set_status`` edits the driver's file."""

    def __init__(self, folder, processes, user="monitor", password="s3cret pw"):
        self.folder, self.processes = folder, processes
        self.port = free_port()
        self.user, self.password = user, password
        state = folder / "state"
        state.mkdir(mode=0o700)
        self.dev = folder / "dummy.dev"
        self.set_status("OL", 100, 1800)
        write(folder / "ups.conf", f"[dummy]\n  driver = dummy-ups\n  port = {self.dev}\n  mode = dummy-once\n"
              "  pollinterval = 1\n", 0o600)
        write(folder / "upsd.conf", f"LISTEN 127.0.0.1 {self.port}\n", 0o600)
        write(folder / "upsd.users", f'[{user}]\n  password = "{password}"\n  upsmon primary\n', 0o600)
        self.env = dict(os.environ, NUT_CONFPATH=str(folder), NUT_STATEPATH=str(state), NUT_ALTPIDPATH=str(state))
        for binary in ("dummy-ups", "upsd"):
            if not (NUT_DIR / "lib" / "nut" / binary).exists():
                pytest.fail(f"NUT's {binary} is missing under {NUT_DIR}: tests/run unpacks nut-server and nut-client there")
        self.start_driver()
        self.upsd = processes.start([str(NUT_DIR / "lib/nut/upsd"), "-u", "root", "-F"], folder / "upsd.out", env=self.env)
        wait_for(lambda: port_open(self.port), 10, "upsd's port")
        wait_for(lambda: self.upsc("ups.status") not in (None, "WAIT"), 15, "upsd to see the dummy driver")

    def start_driver(self):
        self.driver = self.processes.start([str(NUT_DIR / "lib/nut/dummy-ups"), "-a", "dummy", "-u", "root", "-F"],
                                           self.folder / "dummy.out", env=self.env)

    def stop_driver(self):
        self.processes.stop(self.driver)

    def upsc(self, var):
        result = subprocess.run([str(NUT_DIR / "bin/upsc"), f"dummy@127.0.0.1:{self.port}", var],
                                capture_output=True, text=True, env=self.env, timeout=5)
        return result.stdout.strip() if result.returncode == 0 else None

    def set_status(self, status, charge, runtime_s):
        """Writes the dummy driver's file atomically; upsd reports it within about a second."""
        tmp = self.folder / "dummy.tmp"
        tmp.write_text(f"ups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime_s}\n")
        os.replace(tmp, self.dev)
