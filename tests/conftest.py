import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from hgs.sim.ups import NisServer, SimUps, UpsdServer
from daemons import RealApcupsd, RealNut
from harness import Processes, require_binary, wait_for, write

@pytest.fixture
def processes():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture
def make_config(tmp_path):
    """Returns a function writing a config module into tmp_path; extra text is appended."""

    def make(ups="'daemon': 'apcupsd', 'address': '127.0.0.1:3551'", extra="", hosts=None, name="config.py"):
        hosts = hosts if hosts is not None else "[{'name': 'xen1', 'address': '127.0.0.1', 'mac': 'aa:bb:cc:dd:ee:01'}]"
        text = textwrap.dedent(f"""\
            UPS = {{{ups}}}
            HOSTS = {hosts}
            PATHS = {{'state_dir': 'state', 'log_file': 'log/hgs.log', 'lock_dir': 'lock'}}
            LOGGING = {{'syslog': False}}
            """) + textwrap.dedent(extra)
        return write(tmp_path / name, text, 0o600)

    return make


@pytest.fixture
def sim_ups():
    ups = SimUps(name="simups")
    with NisServer(ups) as nis, UpsdServer(ups) as upsd:
        ups.nis_port, ups.upsd_port = nis.port, upsd.port
        yield ups


@pytest.fixture
def real_apcupsd(tmp_path, processes):
    folder = tmp_path / "apcupsd"
    folder.mkdir()
    lab = RealApcupsd(folder, processes)
    yield lab
    processes.stop(lab.proc)
    lab.stop()


@pytest.fixture
def real_nut(tmp_path, processes):
    folder = tmp_path / "nut"
    folder.mkdir()
    yield RealNut(folder, processes)


@pytest.fixture(scope="session")
def postfix(tmp_path_factory):
    """A real Postfix (local delivery only), started in the foreground and stopped by its PID."""
    postfix_bin = require_binary("/usr/sbin/postfix", "postfix")
    pid_file = Path("/var/spool/postfix/pid/master.pid")
    log = tmp_path_factory.mktemp("postfix") / "postfix.out"

    def status():
        return subprocess.run([postfix_bin, "status"], capture_output=True).returncode == 0

    def start():
        return subprocess.Popen([postfix_bin, "start-fg"], stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    proc = None
    if not status():
        proc = start()

        def started():
            nonlocal proc
            if proc.poll() is not None:
                # start-fg refuses while a master is still winding down (it says so only to syslog): retry
                time.sleep(0.5)
                proc = start()
                return False
            return status()

        wait_for(started, 30, "postfix to start (postfix start-fg)")
    yield Mailbox(Path("/var/mail/root"))
    if proc is not None:
        master_pid = int(pid_file.read_text().split()[0])
        Processes.stop_pid(master_pid)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Mailbox:
    """An mbox delivered to by Postfix; ``wait_for_text`` finds a mail containing a marker."""

    def __init__(self, path):
        self.path = path

    def wait_for_text(self, marker, timeout_s=20):
        def find():
            if not self.path.exists():
                return None
            content = self.path.read_text(errors="replace")
            for message in content.split("\nFrom ")[::-1]:
                if marker in message:
                    return message
            return None

        return wait_for(find, timeout_s, f"a mail containing {marker!r} in {self.path}", interval_s=0.2)


@pytest.fixture
def hostile_server():
    """Starts a TCP server on loopback running ``behaviour(conn)`` per connection."""
    import socket
    import threading

    servers = []

    def start(behaviour):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        stop = threading.Event()

        def serve():
            sock.settimeout(0.1)
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                threading.Thread(target=_run, args=(behaviour, conn, stop), daemon=True).start()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((sock, stop, thread))
        return sock.getsockname()[1]

    yield start
    for sock, stop, thread in servers:
        stop.set()
        thread.join(2)
        sock.close()


def _run(behaviour, conn, stop):
    try:
        behaviour(conn, stop)
    except OSError:
        pass
    finally:
        conn.close()




@pytest.fixture
def site_lab(tmp_path):
    """Returns a factory of SiteLab (real sshd fronting the simulated xe); all stopped at the end."""
    from harness import SiteLab

    require_binary("/usr/sbin/sshd", "openssh-server")
    labs = []

    def make(scenario, **kwargs):
        lab = SiteLab(tmp_path / f"lab{len(labs)}", scenario, **kwargs)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


# -- the fault matrix: tests marked @pytest.mark.fault(what, expected) are written to
# docs/reliability.md with their outcome, when the whole matrix ran in one session ---------

_FAULT_ROWS = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(what, expected): a row of the fault matrix (docs/reliability.md)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is None:
        return
    if report.when == "call" or (report.when == "setup" and report.failed):
        _FAULT_ROWS[item.nodeid] = (marker.args[0], marker.args[1], "passed" if report.passed else "FAILED",
                                    f"{getattr(report, 'duration', 0):.1f}")


def pytest_sessionfinish(session, exitstatus):
    items = [i for i in session.items if i.get_closest_marker("fault")]
    # only a run of the whole matrix rewrites the table: every @fault test of every test file
    matrix = sum(path.read_text().count("\n@fault(") for path in Path(__file__).parent.glob("test_*.py"))
    if not items or len(_FAULT_ROWS) != len(items) or len(items) != matrix:
        return
    lines = ["# Reliability: the fault matrix", "",
             "Generated by the test run (`sudo tests/run`): each row is one test that injects the fault or the bad",
             "input into a real flow (real sshd fronting the simulated xe, simulated UPS over NIS) and checks the",
             "outcome. Regenerated whenever the whole matrix runs.", "",
             "| fault or bad input | expected outcome | test | result | seconds |", "|---|---|---|---|---|"]
    for item in items:
        what, expected, result, seconds = _FAULT_ROWS[item.nodeid]
        lines.append(f"| {what} | {expected} | `{item.name}` | {result} | {seconds} |")
    target = REPO_ROOT / "docs" / "reliability.md"
    target.parent.mkdir(exist_ok=True)
    # sections other test runs write (between '<!-- begin: ... -->' and '<!-- end: ... -->') are kept
    kept = re.findall(r"<!-- begin: .*?<!-- end: [^>]*-->", target.read_text() if target.exists() else "", re.S)
    target.write_text("\n".join(lines) + "\n" + "".join(f"\n{block}\n" for block in kept))


REPO_ROOT = Path(__file__).resolve().parent.parent
