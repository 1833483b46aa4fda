"""One run of a flow command: what `hgs onbattery`, `hgs offbattery` and `hgs doshutdown` share.

``run_flow(ctx, spec)`` hands a hook's call to a detached process, starts the run's log, takes
the site lock by the command's own policy, wires the flow (hgs.wiring: a real run or its
rehearsal twin, chosen once from --dry-run), runs it with SIGTERM and SIGINT handled, closes
the connections, shows a rehearsal's plan, records and mails the report, and returns the exit
code. A command module keeps only what is its own, in its FlowSpec: its arguments, its lock
policy, which flow it runs and how.

Signals: the first SIGTERM (a stopped unit, this box shutting down) or SIGINT (Ctrl-C) asks
the running flow to hurry, the way hgs doshutdown does, and each flow does what hurrying
means to it: the outage flow forces what is left and sends the hosts down now; the restore
stops at its next step (inside any wait) with its snapshot kept. The report, and so the mail,
says which signal came and what it did. A second SIGINT interrupts at once.
"""

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

from hgs.commands._flow import hand_off, hook_notice, mail_report, watch


class Entry(NamedTuple):
    """A lock policy's answer: go on, or end now with exit ``code``; ``fault`` is a lock fault
    the flow goes on with anyway (it is in the report)."""

    go_on: bool
    code: int | None = None
    fault: str | None = None


GO = Entry(True)


@dataclass(frozen=True)
class FlowSpec:
    """What one flow command is: the parts of a run that are its own."""

    command: str  # "onbattery": the hook's event, the history's command
    kind: str  # the report's kind: "outage", "restore", "forced shutdown"
    flow_class: type  # OutageFlow, RestoreFlow
    take_lock: Callable  # (lock, log) -> Entry: merge, wait, refuse or escalate
    begins: str  # the run's first line in the log
    on_signal: str  # what SIGTERM/SIGINT does to this flow, said in the log and the report
    begins_level: int = logging.INFO
    notice: str | None = None  # the hook's own notice, sent at once: "power_lost", "power_back"
    detaches: bool = True  # False: the command always runs in this process (doshutdown)
    records_event: bool = False  # True: the command notes its event itself (doshutdown)
    confirm: Callable = lambda rig, deps, log: True  # -> flow.run(confirm=...)
    interrupt: Callable | None = None  # (flow, escalated) -> what the SSH connections ask while a call waits
    forced: bool = False  # escalated from the start (doshutdown)
    settings: Callable = lambda settings: settings  # the run's own settings (doshutdown: forced timings)
    bound_s: float | None = None  # the command returns within this many seconds of ``started``
    started: float = 0.0  # time.monotonic() when the command began (for bound_s)
    plan_title: str | None = None  # a rehearsal prints the flow's plan under this title
    idle: str | None = None  # said when the flow had nothing to do (no mail, no record then)


class StopRequest:
    """The signal that asked this run's flow to hurry or stop, once one came.

    Called, it is the flow's ``escalated``: the signal's reason (a text) once signalled, else
    whatever ``also`` says (the site lock's escalation file, written by hgs doshutdown)."""

    def __init__(self, also=lambda: False):
        self.reason = None
        self.signal = None
        self.also = also

    def __call__(self):
        return self.reason or self.also()


def start_flow_log(ctx, rig):
    """Starts the run's log; a rehearsal shows every 'would' line and writes no log file."""
    ctx.verbose = max(ctx.verbose, rig.min_verbose)
    return ctx.start_log(to_file=rig.log_to_file)


def run_flow(ctx, spec, rig=None):
    """Runs the flow command ``spec`` (see the module's docstring); returns the exit code.
    ``rig`` is the run's wiring (hgs.wiring.LiveRun or Rehearsal); by default from --dry-run."""
    from hgs import wiring

    rig = rig or wiring.for_run(ctx.settings, rehearsal=ctx.args.dry_run)
    if spec.detaches and rig.detaches and hand_off(ctx, spec.command, spec.kind):
        return 0
    if spec.records_event:
        rig.record_event(spec.command)  # first: a running flow hears of it at its next look
    run_log = start_flow_log(ctx, rig)
    log = run_log.logger
    if spec.notice:
        hook_notice(ctx, run_log, spec.notice, rig.notifier_class)
    lock = rig.lock()
    entry = spec.take_lock(lock, log)
    if not entry.go_on:
        return entry.code
    try:
        report, flow, mailer = _run_locked(ctx, spec, rig, lock, entry, run_log)
    finally:
        lock.release()
    if report.idle and spec.idle:
        ctx.out(spec.idle)
        log.info("%s flow finished: %s", report.label, report.result)
        return 0
    rig.show_plan(ctx.out, spec.plan_title, flow.plan_lines)
    mail_report(ctx, report, mailer, run_log, rig)
    if spec.bound_s is not None and ctx.notifier is not None:  # the box halts right after: what is left of the bound
        ctx.notifier.close(max(0.0, spec.bound_s - (time.monotonic() - spec.started) - 0.5))
    ctx.out(report.summary().rstrip())
    return report.exit_code()


def _run_locked(ctx, spec, rig, lock, entry, run_log):
    """Wires and runs the flow while the lock is held; returns (report, flow, mailer)."""
    from hgs.errors import HgsError
    from hgs.flows.report import Report

    log = run_log.logger
    log.log(spec.begins_level, "%s%s", spec.begins, rig.note)
    stop = StopRequest(also=(lambda: True) if spec.forced else lock.escalated)
    deps, mailer, connections = rig.build(log, stop, spec.settings(ctx.settings))
    report = Report(spec.kind, run_log.run_id, rehearsal=rig.rehearsal)
    watch(ctx, report, run_log, rig)
    flow = spec.flow_class(deps, report)
    if spec.interrupt is not None:
        for connection in connections.values():
            connection.interrupt = spec.interrupt(flow, stop)
    if entry.fault:
        flow.fault("the site lock", HgsError(entry.fault))
    cut_short = False
    previous = _handle_signals(stop, spec, report, log)
    try:
        cut_short = not _run(flow, spec.confirm(rig, deps, log), spec, log)
    finally:
        _restore_signals(previous)
        if not cut_short:  # a flow cut short by the bound may still use its connections
            for connection in connections.values():
                try:
                    connection.close()
                except Exception:  # closing a dead connection: nothing to do
                    pass
    return report, flow, mailer


def _run(flow, confirm, spec, log):
    """Runs the flow here, or beside this thread when the command has a bound; returns whether
    it finished (False: the bound came first, the report says so)."""
    if spec.bound_s is None:
        _guarded(flow, confirm, spec, log)
        return True
    worker = threading.Thread(target=_guarded, args=(flow, confirm, spec, log), daemon=True)
    worker.start()
    # keep a little of the bound for the mail; the box halts right after the command returns
    worker.join(max(0.0, spec.bound_s * 0.85 - (time.monotonic() - spec.started)))
    if not worker.is_alive():
        return True
    log.error("%s: bound reached after %.1f s; returning so this box can halt", spec.command,
              time.monotonic() - spec.started)
    flow.report.finish(f"cut short by the {spec.command} bound", failed=True)
    return False


def _guarded(flow, confirm, spec, log):
    """Runs the flow; an error it did not record itself is recorded, never lost (a last net)."""
    try:
        flow.run(confirm=confirm)
    except Exception as err:
        from hgs.errors import HgsError

        where = f"the {spec.kind} flow"
        ours = isinstance(err, HgsError)
        log.error("FAULT in %s: %s", where, err if ours else f"{type(err).__name__}: {err}",
                  exc_info=None if ours else err)
        flow.report.fault(where, str(err) if ours else f"{type(err).__name__}: {err}")
        flow.report.finish("failed", failed=True)


def _handle_signals(stop, spec, report, log):
    """Makes SIGTERM and SIGINT ask the flow to hurry (see the module's docstring); returns the
    handlers they had. Only the main thread can: elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop.reason is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # Ctrl-C twice: now
            log.warning("%s again: the flow is already asked to hurry", name)
            return
        stop.signal = name
        stop.reason = f"{name} received"
        log.warning("%s: %s", name, spec.on_signal)
        report.fact(f"{name} received: {spec.on_signal}")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore_signals(previous):
    for sig, old in previous.items():
        signal.signal(sig, old)
