"""The end-to-end harness: real daemons (apcupsd, NUT, Postfix) and the simulated site for the tests.

Every process a test starts is tracked by its PID and stopped by that PID at the end; nothing
is ever killed by name. A missing daemon is a test failure that says how to install it
(tests/run installs everything), never a silent skip.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HGS = str(Path(sys.executable).with_name("hgs"))
NUT_DIR = Path(os.environ.get("HGS_NUT_DIR", REPO / ".cache" / "nut"))


def require_binary(path, package):
    """Returns ``path`` if it is executable; fails the test with an install hint otherwise."""
    found = shutil.which(str(path))
    if not found:
        pytest.fail(f"{path} is missing: install {package} (tests/run installs everything the tests need)")
    return found


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s, what, interval_s=0.05):
    """Polls ``predicate`` until it returns a true value; returns it, or fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class Processes:
    """Starts processes and stops each one by its PID (SIGTERM, then SIGKILL)."""

    def __init__(self):
        self.started = []

    def start(self, argv, log_path, env=None, **kwargs):
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, **kwargs)
        log.close()
        self.started.append(proc)
        return proc

    def stop(self, proc, timeout_s=5.0):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)

    @staticmethod
    def stop_pid(pid, timeout_s=5.0):
        """Stops a daemon that forked away from us, by the PID it wrote to its pid file."""
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self):
        for proc in reversed(self.started):
            self.stop(proc)


def write(path, text, mode=0o644):
    path = Path(path)
    path.write_text(text)
    path.chmod(mode)
    return path


def run_hgs(*args, input=None, timeout=60, env=None):
    """Runs the installed `hgs` console script; returns CompletedProcess (text)."""
    return subprocess.run([HGS, *args], capture_output=True, text=True, input=input, timeout=timeout, env=env)


def timed(function, *args, **kwargs):
    """Returns (result or the exception raised, seconds taken)."""
    start = time.monotonic()
    try:
        result = function(*args, **kwargs)
    except Exception as err:  # the caller asserts on the kind
        result = err
    return result, time.monotonic() - start


class SiteLab:
    """A simulated site (real sshd by default), a simulated UPS as apcupsd NIS, and a config."""

    def __init__(self, workdir, scenario, front_door="openssh", timings=None, extra="", ups_state="onbatt",
                 wol_drop_first=0):
        from hgs.sim.lab import SimSite
        from hgs.sim.ups import NisServer, SimUps

        self.site = SimSite(workdir / "site", scenario, front_door=front_door, wol_drop_first=wol_drop_first)
        # the UPS runs in real time: hgs's deadlines are real seconds, whatever the site's time scale
        self.ups = SimUps(name="labups")
        self.ups.set_state(ups_state)
        self.nis = NisServer(self.ups)
        self.config = workdir / "config.py"
        self.timings, self.extra = timings, extra
        self.write_config(timings, extra)

    def write_config(self, timings=None, extra="", ups_extra="", ups=None):
        base = {"confirm_outage_s": 0.5, "vm_shutdown_timeout_s": 5, "vm_force_timeout_s": 3,
                "host_shutdown_timeout_s": 8, "host_down_confirm_s": 0.3, "xe_timeout_s": 10,
                "restore_confirm_s": 0.5, "host_boot_timeout_s": 20, "wol_resend_interval_s": 2,
                "xapi_ready_timeout_s": 20, "vm_start_timeout_s": 10, "verify_timeout_s": 10}
        base.update(timings or {})
        ups = ups or f"'daemon': 'apcupsd', 'address': '127.0.0.1:{self.nis.port}'"
        ups = f"{{{ups}, 'poll_interval_s': 0.1, 'timeout_s': 2{ups_extra}}}"
        write(self.config, self.site.config_text(ups, base, extra=extra), 0o600)

    def hgs(self, *args, timeout=120):
        return run_hgs("--config", str(self.config), *args, timeout=timeout)

    def names(self):
        state = self.site.store.read()
        return {v["uuid"]: v["name"] for v in state["vms"].values()} | {h["uuid"]: h["name"] for h in state["hosts"].values()}

    def calls(self, command=None):
        """Returns [(time, host, command, argv)] of the xe calls, optionally of one command."""
        out = []
        for call in self.site.store.calls():
            argv = call["argv"]
            if argv and (command is None or argv[0] == command):
                out.append((call["t"], call["host"], argv[0], argv))
        return out

    def changing_calls(self):
        from hgs.sim.xe import CHANGING

        return [c for c in self.calls() if c[2] in CHANGING]

    def target(self, argv):
        """Returns the name of the VM or host an xe call's uuid= names."""
        names = self.names()
        for arg in argv:
            if arg.startswith("uuid="):
                return names.get(arg[5:], arg[5:])
        return None

    def state_file(self):
        import json

        return json.loads((self.site.workdir / "state" / "state.json").read_text())

    def log_text(self):
        log = self.site.workdir / "hgs.log"
        return log.read_text() if log.exists() else ""

    def stop(self):
        self.site.stop()
        self.nis.stop()
