"""hgs onbattery: the power failed; confirm it, then bring the site down cleanly."""

import time

from hgs.commands._flow import add_flow_arguments
from hgs.commands.flowrun import GO, Entry, FlowSpec, run_flow

LOCK_WAIT_S = 600.0  # a restore checks the power between steps; a step is bounded by its own deadline


def add_arguments(parser):
    add_flow_arguments(parser)


def take_lock(lock, log, wait_s=LOCK_WAIT_S):
    """Takes the site lock for the outage flow. Returns an Entry: (go on?, exit code if not, fault text).

    Another outage flow holding it: this event merges into it (exit 0). A restore holding it:
    it stops at its next step and this flow waits for it. A lock that cannot be taken at all
    (disk full, permissions) never stops the protective flow: it runs unlocked and says so.
    Taken, a request to hurry left by a flow that ended is cleared.
    """
    from hgs.box.lock import LockError

    try:
        if lock.acquire(kind="outage"):
            lock.clear_escalation()
            return GO
        pid, kind = lock.holder()
        for _ in range(10):  # a holder that has just taken the lock writes its kind a moment later
            if kind is not None:
                break
            time.sleep(0.05)
            pid, kind = lock.holder()
        if kind in ("outage", "doshutdown"):
            log.info("an outage flow is already running (pid %s): this onbattery event merges into it", pid)
            return Entry(False, 0)
        if kind == "restore":
            log.info("a restore is running (pid %s): it stops at its next step; the outage flow takes over", pid)
        else:  # never drop an outage for a holder that cannot be told apart from a restore
            log.warning("the site lock is held by pid %s, which does not say what it runs (%s): waiting for it",
                        pid, kind)
        if lock.acquire(wait_s=wait_s, kind="outage"):
            lock.clear_escalation()
            return GO
        log.error("the restore (pid %s) did not stop within %.0f s; this outage flow gives up", pid, wait_s)
        return Entry(False, 1)
    except LockError as err:
        log.error("%s: the outage flow runs WITHOUT the site lock (the hardware comes first); another flow "
                  "may run at the same time", err)
        lock.clear_escalation()
        return Entry(True, None, f"{err}; the flow ran without the site lock")


class EscalationCut:
    """A connection's ``interrupt`` for the outage flow: the first check after the flow was asked
    to hurry (hgs doshutdown, a signal) cuts the remote wait in progress (a hung xe call must
    not hold the hurried flow); the calls after it run normally, since the hurried flow still
    needs them."""

    def __init__(self, escalated):
        self.escalated = escalated
        self.cut = False

    def __call__(self):
        if self.cut:
            return None
        why = self.escalated()
        if not why:
            return None
        self.cut = True
        return f"{why}: hurrying" if isinstance(why, str) else "hgs doshutdown asked to hurry"


def spec():
    from hgs.flows.outage import OutageFlow

    return FlowSpec(
        command="onbattery", kind="outage", flow_class=OutageFlow, take_lock=take_lock,
        begins="onbattery: the UPS reported a power failure", notice="power_lost",
        on_signal="hurrying: what is left is forced and the hosts are sent down now",
        confirm=lambda rig, deps, log: rig.outage_confirmation(deps, log),
        interrupt=lambda flow, escalated: EscalationCut(escalated),
        plan_title="the outage flow would do this (times from the start of the shutdown):")


def run(ctx):
    return run_flow(ctx, spec())
