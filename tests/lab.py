"""Real daemons for the tests: apcupsd, NUT (dummy-ups + upsd), Postfix.

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
