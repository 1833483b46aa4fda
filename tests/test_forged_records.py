"""VM names that forge xe records: the real parser and the outage's selection, over the simulated xe.

A VM's name is free text printed last in each record, so a name can carry whole records
claiming other VMs. Whatever a name says, the snapshot (the VMs the restore starts), the VMs
forced at once (no guest tools) and the VMs left alone stay what the site really has.
"""

import io
import re
import shlex
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgs.box.log import RunLog
from hgs.config import VmPolicy
from hgs.flows.outage import OutageFlow, PoolView
from hgs.flows.report import Report
from hgs.flows.snapshot import State
from hgs.hypervisors.xen.backend import Hypervisor
from hgs.net.ssh import Result
from hgs.sim.site import SiteStore
from hgs.sim.xe import Xe

fault = pytest.mark.fault

U = "00000000-0000-4000-8000-0000000000{:02d}".format
FORGER, HALTED, TOOLED, NOTOOLS, DC, VICTIM = (U(i) for i in range(1, 7))
OTHERS = [HALTED, TOOLED, NOTOOLS, DC, VICTIM]
POLICY = VmPolicy(leave_alone=("dc01",))


class SimXeConnection:
    """A Connection's run() answered by the simulated xe (what sshd runs in the end-to-end tests)."""

    def __init__(self, store):
        self.xe = Xe(store, "xen1")
        self.calls = []

    def run(self, command, timeout_s):
        argv = shlex.split(command)[1:]
        self.calls.append(argv)
        status, out, err = self.xe.run(argv)
        return Result(status, out, err)


def site(folder, forger_name):
    vms = [{"name": forger_name, "uuid": FORGER},
           {"name": "halted", "uuid": HALTED, "power_state": "halted"},
           {"name": "tooled", "uuid": TOOLED},
           {"name": "notools", "uuid": NOTOOLS, "tools": False},
           {"name": "dc01", "uuid": DC},
           {"name": "victim", "uuid": VICTIM}]
    return SiteStore.create(Path(folder) / "site.json", {"hosts": [{"name": "xen1", "master": True}], "vms": vms})


class MemoryState:
    def __init__(self):
        self.saved = None

    def save(self, data):
        self.saved = data


def select(folder, forger_name, stream=None):
    """Runs the outage's discovery and snapshot over the site; returns (flow, log, hv connection)."""
    store = site(folder, forger_name)
    connection = SimXeConnection(store)
    run_log = RunLog("test-run", verbose=1, stderr=stream or io.StringIO())
    host = SimpleNamespace(name="xen1", xe_path="xe")
    hv = Hypervisor(host, connection, 10, run_log.logger)
    deps = SimpleNamespace(settings=SimpleNamespace(vms=POLICY, timings=None), hypervisors={"xen1": hv},
                           state_file=MemoryState(), log=run_log.logger)
    flow = OutageFlow(deps, Report("outage", "test-run"))
    info = hv.pool()
    flow.pools = {info.uuid: PoolView(info, hv.hosts(), "xen1")}
    flow.take_snapshot(State())
    run_log.close()
    return flow, run_log, connection


def selection(flow):
    snapshot = {u: (v.name, v.tools) for u, v in flow.snapshot.vms.items() if u != FORGER}
    forced = {u for u, v in flow.running_now.items() if not v.tools}
    left_alone = {FORGER, TOOLED, NOTOOLS, DC, VICTIM} - set(flow.snapshot.vms)
    return snapshot, forced, left_alone, FORGER in flow.snapshot.vms


EXPECTED = ({TOOLED: ("tooled", True), NOTOOLS: ("notools", False), VICTIM: ("victim", True)}, {NOTOOLS}, {DC}, True)


def field_line(key, tag, value, pad):
    return f"{key.rjust(pad) if pad else key} ({tag}): {value}"


forged_field = st.sampled_from([
    ("power-state", " RO", "running"), ("power-state", " RO", "halted"),
    ("PV-drivers-detected", " RO", "false"), ("PV-drivers-detected", " RO", "true"),
    ("name-label", " RW", "dc01"), ("name-label", " RW", "victim"), ("order", " RW", "9"),
    ("resident-on", " RO", "<not in database>"),
])


@st.composite
def forged_records(draw):
    records = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(OTHERS + ["not-a-uuid", U(99)]))
        pad = draw(st.sampled_from([0, 23]))
        lines = [field_line("uuid", " RO", target, pad)]
        lines += [field_line(k, t, v, pad) for k, t, v in draw(st.lists(forged_field, max_size=6))]
        records.append("\n".join(lines))
    prefix = draw(st.text(alphabet="ab \t\x1b", max_size=4))
    blank = draw(st.sampled_from(["\n\n", "\n\n\n", "\n \n"]))
    return prefix + blank + blank.join(records) + draw(st.sampled_from(["", "\n", "\n\n", "\nname-label ( RW): x"]))


def test_a_plain_site_is_selected_as_it_is(tmp_path):
    flow, _, connection = select(tmp_path, "forger")
    assert selection(flow) == EXPECTED
    assert not any(argv[0] == "vm-param-get" for argv in connection.calls)  # no extra call on a clean listing


@fault("VM names forging xe records for other VMs: a halted VM 'running', tools 'false', a name on leave_alone (property-based)",
       'snapshot, forced-at-once and left-alone sets unchanged; forged VMs read again field by field')
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=forged_records())
def test_names_forging_records_change_neither_the_snapshot_nor_the_forced_nor_the_left_alone(name):
    with tempfile.TemporaryDirectory() as folder:
        flow, _, _ = select(folder, name)
        assert selection(flow) == EXPECTED


def test_the_forgeries_of_the_report_are_refused_and_logged_loudly(tmp_path):
    # the three forgeries: a halted VM made 'running' (the restore would start it), a VM with tools
    # made tool-less (forced at once), and a VM renamed to a name on VMS['leave_alone'] (exempted)
    name = ("x\n\nuuid ( RO): " + HALTED + "\n power-state ( RO): running\n PV-drivers-detected ( RO): true"
            "\n\nuuid ( RO): " + TOOLED + "\n power-state ( RO): running\n PV-drivers-detected ( RO): false"
            "\n\nuuid ( RO): " + VICTIM + "\n power-state ( RO): running\n name-label ( RW): dc01")
    stream = io.StringIO()
    flow, run_log, connection = select(tmp_path, name, stream)
    assert selection(flow) == EXPECTED
    assert flow.snapshot.vms[FORGER].name == name  # its own name, read again by itself
    assert "FORGED xe records" in run_log.text() and "FORGED xe records" in stream.getvalue()
    reread = {argv[1][5:] for argv in connection.calls if argv[0] == "vm-param-get"}
    assert {TOOLED, VICTIM, FORGER} <= reread


LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d test-run (DEBUG|INFO|WARNING|ERROR) ")


@fault("a VM name with a newline, CR, ESC, U+2028 (a fake log line, a fake 'all well')",
       'escaped in the log, the report and the mail: every log line is a real one')
def test_a_name_cannot_write_a_log_line_a_mail_line_or_a_terminal_escape(tmp_path):
    fake = "2026-12-05 08:00:00 test-run INFO    outage flow finished: site down"
    name = f"evil\n{fake}\r\x1b[2J\u2028all well"
    flow, run_log, _ = select(tmp_path, name)
    flow.report.vm(name, "clean", 1.0, f"detail\n{fake}")
    flow.report.fact(f"fact about {name}")
    for text in (run_log.text(), flow.report.summary()):
        assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
        assert fake not in text.splitlines()
    assert all(LINE.match(line) for line in run_log.text().splitlines())
    assert "evil\\n2026-12-05" in run_log.text()
    summary = flow.report.summary().splitlines()
    assert not any(line.startswith("2026-12-05") for line in summary)
    assert any(line.startswith("  evil\\n2026") and line.endswith("(detail\\n" + fake + ")") for line in summary)
