"""hgs offbattery: the power is back; once it is stable, wake the hosts and start exactly
the VMs that were running. Also the boot-time resume: with nothing shut down, it does nothing."""

from hgs.commands._flow import add_flow_arguments
from hgs.commands.flowrun import GO, Entry, FlowSpec, run_flow

LOCK_WAIT_S = 4 * 3600.0  # a running outage flow finishes first; every step of it is bounded


def add_arguments(parser):
    add_flow_arguments(parser)


def take_lock(lock, log, wait_s=LOCK_WAIT_S):
    """Takes the site lock for the restore. Another restore holding it: this event merges into
    it (exit 0). An outage flow or doshutdown holding it: the restore waits for it to finish
    (exit 1 past ``wait_s``). Taken, a request to hurry left by a flow that ended is cleared."""
    if not lock.acquire(kind="restore"):
        pid, kind = lock.holder()
        if kind == "restore":
            log.info("a restore is already running (pid %s): this offbattery event merges into it", pid)
            return Entry(False, 0)
        log.info("a %s flow is running (pid %s): the restore waits for it to finish", kind, pid)
        if not lock.acquire(wait_s=wait_s, kind="restore"):
            log.error("the %s flow (pid %s) still runs after %.0f s: restore not started", kind, pid, wait_s)
            return Entry(False, 1)
    lock.clear_escalation()  # we hold the lock: a request to hurry is from a flow that ended
    return GO


def spec():
    from hgs.flows.restore import RestoreFlow

    return FlowSpec(
        command="offbattery", kind="restore", flow_class=RestoreFlow, take_lock=take_lock,
        begins="offbattery: the power is back", notice="power_back",
        on_signal="the restore stops at its next step; its snapshot is kept for the next attempt",
        interrupt=lambda flow, escalated: flow.stop_reason,  # power lost, doshutdown or a signal cuts a waiting xe call
        plan_title="the restore flow would do this:",
        idle="hgs offbattery: nothing was shut down by hgs: nothing to restore")


def run(ctx):
    return run_flow(ctx, spec())
