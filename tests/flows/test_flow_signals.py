"""A flow command run as `hgs offbattery --foreground` runs it (hgs.commands.flowrun.run_flow,
the real lock, log, history and mail), against the fake pool and its manual clock: SIGTERM
(a stopped unit, this box shutting down) or SIGINT (Ctrl-C) during a restore stops it at its
next step, with the snapshot kept, and the report and the mail say which signal stopped it;
during an outage it makes the flow hurry, as hgs doshutdown does. No root, no sockets: the
signal is sent to this process from inside the flow's own waits."""

import argparse
import dataclasses
import io
import os
import signal

import pytest

from hgs import config, wiring
from hgs.box.lock import SiteLock
from hgs.commands import Context, offbattery, onbattery
from hgs.commands.flowrun import run_flow
from hgs.flows.snapshot import Snapshot

try:
    from .flowfakes import accepted
    from .restore_fakes import FakeStateFile, Site, site_down_state
except ImportError:  # tests/flows is not a package
    from flowfakes import accepted
    from restore_fakes import FakeStateFile, Site, site_down_state

STOP_BOUND_S = 3.0  # from the signal to the restore's return, on the flow's clock


class RecordingMailer:
    def __init__(self):
        self.sent = []

    def send(self, subject, body):
        self.sent.append((subject, body))


class Connection:
    """What run_flow wires and closes: its ``interrupt`` is the fake host's (as on an SSH connection)."""

    def __init__(self, hypervisor):
        self.hypervisor = hypervisor
        self.closed = False

    @property
    def interrupt(self):
        return self.hypervisor.interrupt

    @interrupt.setter
    def interrupt(self, value):
        self.hypervisor.interrupt = value

    def close(self):
        self.closed = True


class FakePoolRun(wiring.LiveRun):
    """A real run's wiring (lock, history, progress, notices) with the fake pool for the flow."""

    log_to_file = False

    def __init__(self, settings, site, state):
        super().__init__(settings)
        self.site, self.state = site, state
        self.deps = self.mailer = self.connections = None

    def build(self, log, escalated, settings=None):
        self.deps = dataclasses.replace(self.site.deps(self.state), escalated=escalated, log=log)
        self.mailer = RecordingMailer()
        self.connections = {name: Connection(hv) for name, hv in self.deps.hypervisors.items()}
        return self.deps, self.mailer, self.connections


@pytest.fixture
def command(make_config, tmp_path):
    """Returns run(site, state) -> (exit code, stdout, rig): `hgs offbattery --foreground` on the fake pool."""
    path = make_config(extra="MAIL = {'when': 'always'}\n")
    settings = config.load(path, check_owner=False)

    def run(site, state):
        args = argparse.Namespace(config=str(path), command="offbattery", dry_run=False, foreground=True,
                                  run_id=None, verbose=0)
        out = io.StringIO()
        ctx = Context(args, stdout=out, stderr=io.StringIO())
        ctx._settings = settings
        rig = FakePoolRun(settings, site, state)
        try:
            code = run_flow(ctx, offbattery.spec(), rig=rig)
        finally:
            if ctx.notifier is not None:
                ctx.notifier.close()
            if ctx.run_log:
                ctx.run_log.close()
        return code, out.getvalue(), rig

    return run


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("during", ["confirmation", "boot wait"])
def test_a_signal_during_a_restore_stops_it_at_the_next_step_with_the_snapshot_kept(command, signum, during):
    name = signal.Signals(signum).name
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    site = Site()
    snapshot = site.snapshot()
    confirm_s = site.settings().timings.restore_confirm_s
    # the power's confirmation, or the master's boot (120 s) after the hosts were woken
    site.inject("ups", at=confirm_s / 2 if during == "confirmation" else confirm_s + 60.0)
    site.fault = lambda: os.kill(os.getpid(), signum)
    code, out, rig = command(site, site_down_state(snapshot))

    assert site.injected_at is not None
    assert site.clock.t - site.injected_at <= STOP_BOUND_S  # at its next step, not at the end of the wait
    assert set(site.power.values()) == {"halted"}  # no VM started after the signal
    assert bool(site.woken_at) == (during == "boot wait")
    state = rig.deps.state_file.data
    assert state["phase"] == "site_down"  # the snapshot kept for the next attempt:
    assert Snapshot.from_dict(state["snapshot"]) == Snapshot.from_dict(snapshot)
    said = f"{name} received: the restore stops at its next step; its snapshot is kept"
    assert said in out
    if during == "boot wait":
        assert f"restore stopped: {name} received" in out
    assert "hgs doshutdown" not in out  # a signal is not said to be hgs doshutdown
    [(subject, body)] = rig.mailer.sent
    assert subject.startswith("restore stopped") and said in body
    assert f"stopped: {name} received" in subject and "power failed" not in subject  # it did not
    assert code == 0 and all(c.closed for c in rig.connections.values())
    assert SiteLock(rig.settings.paths.lock_dir).acquire()  # released
    assert {sig: signal.getsignal(sig) for sig in before} == before  # the handlers are given back


def test_without_a_signal_the_same_run_restores_the_site(command):
    site = Site()
    code, out, rig = command(site, site_down_state(site.snapshot()))
    assert code == 0 and "site restored" in out and "received" not in out
    assert set(site.power.values()) == {"running"} and rig.deps.state_file.data["phase"] == "idle"


def test_an_error_the_flow_did_not_expect_is_in_the_mail_and_the_exit_code_not_a_traceback(command, monkeypatch):
    def broken(self, data):
        raise KeyError("pools")  # a bug met half way through: at the first save of the state

    monkeypatch.setattr(FakeStateFile, "save", broken)
    site = Site()
    code, out, rig = command(site, site_down_state(site.snapshot()))
    assert code == 1 and "hgs restore: failed -- FAILED" in out
    [(subject, body)] = rig.mailer.sent
    assert "FAILED" in subject and "FAULT: the restore flow: KeyError: 'pools'" in body
    assert all(c.closed for c in rig.connections.values())
    assert SiteLock(rig.settings.paths.lock_dir).acquire()


class FakeOutageRun(wiring.LiveRun):
    """A real run's wiring with the fake pool of flowfakes; ``signal_when(site)`` says when to send SIGTERM."""

    log_to_file = False

    def __init__(self, site, signal_when):
        super().__init__(site.settings)
        self.site, self.signal_when = site, signal_when
        self.signalled_at = None
        self.mailer = RecordingMailer()

    def build(self, log, escalated, settings=None):
        def escalated_after_the_signal():
            if self.signalled_at is None and self.signal_when(self.site):
                self.signalled_at = self.site.clock.now()
                os.kill(os.getpid(), signal.SIGTERM)
            return escalated()

        return self.site.deps(escalated=escalated_after_the_signal), self.mailer, {}


def test_sigterm_during_an_outage_makes_it_hurry_and_the_mail_says_so(site):
    s = site(off_after_s=120, timings={"host_shutdown_timeout_s": 300})  # the members take 2 min to go quiet

    def members_sent_5_s_ago(s):
        sent = accepted(s, "host-shutdown")
        return "member2" in sent and s.clock.now() >= sent["member2"] + 5

    rig = FakeOutageRun(s, members_sent_5_s_ago)
    args = argparse.Namespace(config=str(s.tmp / "config.py"), command="onbattery", dry_run=False, foreground=True,
                              run_id=None, verbose=0)
    out = io.StringIO()
    ctx = Context(args, stdout=out, stderr=io.StringIO())
    ctx._settings = s.settings
    try:
        code = run_flow(ctx, onbattery.spec(), rig=rig)
    finally:
        ctx.run_log.close()
    sent = accepted(s, "host-shutdown")
    assert rig.signalled_at is not None
    assert sent["master"] - rig.signalled_at < 1.0, sent  # not after the members' 120 s: hurried
    assert s.host_powers() == {"master": "off", "member1": "off", "member2": "off"}
    [(subject, body)] = rig.mailer.sent
    assert "SIGTERM received: hurrying: what is left is forced and the hosts are sent down now" in body
    assert "site down" in out.getvalue() and code == 0
