"""`hgs status` never takes the site lock: an onbattery arriving while status reads still runs
its outage flow (a reader holding the lock for an instant made onbattery see a holder that is
not a restore, and drop the outage)."""

import subprocess
import sys
import threading

from hgs.box.lock import SiteLock
from harness import HGS, free_port

HOLD = ("import sys, time; from hgs.box.lock import SiteLock; lock = SiteLock(sys.argv[1]); "
        "assert lock.acquire(kind='outage'); print('held', flush=True); sys.stdin.read()")


def config(make_config, tmp_path):
    closed = free_port()  # nothing listens: the UPS and the host are refused at once
    return make_config(ups=f"'daemon': 'apcupsd', 'address': '127.0.0.1:{closed}', 'poll_interval_s': 0.1",
                       hosts=f"[{{'name': 'xen1', 'address': '127.0.0.1', 'ssh_port': {closed}, "
                             "'mac': 'aa:bb:cc:dd:ee:01'}]",
                       extra="TIMINGS = {'confirm_outage_s': 0.3, 'unreachable_retry_s': 0}\n"
                             "MAIL = {'when': 'never'}\n")


class PauseInReads:
    """Pauses the status thread right after it read who holds the lock (the instant an old
    status held it), until released."""

    POINTS = {("lock.py", "acquire"), ("lock.py", "holder"), ("status.py", "running_flow")}

    def __init__(self):
        self.paused = threading.Event()
        self.go_on = threading.Event()

    def profile(self, frame, event, arg):
        code = frame.f_code
        if event == "return" and (code.co_filename.rsplit("/", 1)[-1], code.co_name) in self.POINTS \
                and not self.paused.is_set():
            self.paused.set()
            self.go_on.wait(60)


def test_an_onbattery_during_status_still_runs_the_outage_flow(make_config, tmp_path, capsys):
    from hgs import cli

    path = config(make_config, tmp_path)
    pause = PauseInReads()
    exit_codes = []

    def status():
        sys.setprofile(pause.profile)
        try:
            exit_codes.append(cli.main(["--config", str(path), "status", "--json"]))
        finally:
            sys.setprofile(None)

    reader = threading.Thread(target=status, daemon=True)
    reader.start()
    try:
        assert pause.paused.wait(30), "status never read the lock holder"
        flow = subprocess.run([HGS, "--config", str(path), "onbattery", "--foreground"], capture_output=True,
                              text=True, timeout=60)
    finally:
        pause.go_on.set()
        reader.join(30)
    log = (tmp_path / "log" / "hgs.log").read_text()
    assert "merges into it" not in log, log
    assert "onbattery: the UPS reported a power failure" in log
    assert "confirming the outage" in log
    assert "hgs outage:" in flow.stdout, flow.stdout + flow.stderr
    assert exit_codes, "status did not finish"


def test_status_names_the_flow_holding_the_lock_without_taking_it(make_config, tmp_path):
    from hgs.commands.status import running_flow

    path = config(make_config, tmp_path)
    lock_dir = tmp_path / "lock"
    lock = SiteLock(lock_dir)
    assert running_flow(lock) == (None, None)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert running_flow(lock) == (holder.pid, "outage")
        result = subprocess.run([HGS, "--config", str(path), "status", "--json"], capture_output=True, text=True,
                                timeout=60)
        assert f'"pid": {holder.pid}' in result.stdout and '"kind": "outage"' in result.stdout, result.stdout
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert running_flow(lock) == (None, None)  # the file still names it; nobody holds it
