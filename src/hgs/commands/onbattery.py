"""hgs onbattery: the power failed; confirm it, then bring the site down cleanly."""

import time

from hgs.commands._flow import (add_flow_arguments, hand_off, hook_notice, hurry_on_sigterm, mail_report,
                               start_flow_log, watch)

LOCK_WAIT_S = 600.0  # a restore checks the power between steps; a step is bounded by its own deadline


def add_arguments(parser):
    add_flow_arguments(parser)


def take_lock(lock, log, wait_s=LOCK_WAIT_S):
    """Takes the site lock for the outage flow. Returns (go on?, exit code if not, fault text).

    Another outage flow holding it: this event merges into it (exit 0). A restore holding it:
    it stops at its next step and this flow waits for it. A lock that cannot be taken at all
    (disk full, permissions) never stops the protective flow: it runs unlocked and says so.
    """
    from hgs.box.lock import LockError

    try:
        if lock.acquire(kind="outage"):
            return True, None, None
        pid, kind = lock.holder()
        for _ in range(10):  # a holder that has just taken the lock writes its kind a moment later
            if kind is not None:
                break
            time.sleep(0.05)
            pid, kind = lock.holder()
        if kind in ("outage", "doshutdown"):
            log.info("an outage flow is already running (pid %s): this onbattery event merges into it", pid)
            return False, 0, None
        if kind == "restore":
            log.info("a restore is running (pid %s): it stops at its next step; the outage flow takes over", pid)
        else:  # never drop an outage for a holder that cannot be told apart from a restore
            log.warning("the site lock is held by pid %s, which does not say what it runs (%s): waiting for it",
                        pid, kind)
        if lock.acquire(wait_s=wait_s, kind="outage"):
            return True, None, None
        log.error("the restore (pid %s) did not stop within %.0f s; this outage flow gives up", pid, wait_s)
        return False, 1, None
    except LockError as err:
        log.error("%s: the outage flow runs WITHOUT the site lock (the hardware comes first); another flow "
                  "may run at the same time", err)
        return True, None, f"{err}; the flow ran without the site lock"


class EscalationCut:
    """A connection's ``interrupt`` for the outage flow: the first check after `hgs doshutdown`
    asked to hurry cuts the remote wait in progress (a hung xe call must not hold the hurried
    flow); the calls after it run normally, since the hurried flow still needs them."""

    def __init__(self, escalated):
        self.escalated = escalated
        self.cut = False

    def __call__(self):
        if self.cut or not self.escalated():
            return None
        self.cut = True
        return "hgs doshutdown asked to hurry"


def run(ctx):
    from hgs import wiring as runtime
    from hgs.errors import HgsError
    from hgs.flows.outage import OutageFlow
    from hgs.flows.report import Report
    from hgs.box.lock import SiteLock

    settings = ctx.settings
    args = ctx.args
    if hand_off(ctx, "onbattery", "outage"):
        return 0
    run_log = start_flow_log(ctx)
    log = run_log.logger
    hook_notice(ctx, run_log, "power_lost")
    lock = SiteLock(settings.paths.lock_dir)
    lock_fault = None
    if not args.dry_run:
        go_on, code, lock_fault = take_lock(lock, log)
        if not go_on:
            return code
        lock.clear_escalation()
        hurry_on_sigterm(lock, log, "hurrying: what is left is forced and the hosts are sent down now")
    log.info("onbattery: the UPS reported a power failure%s", " (dry run)" if args.dry_run else "")
    deps, mailer, connections = runtime.build(settings, log, dry_run=args.dry_run, escalated=lock.escalated)
    report = Report("outage (dry run)" if args.dry_run else "outage", run_log.run_id)
    watch(ctx, report, run_log)
    flow = OutageFlow(deps, report)
    for connection in connections.values():
        connection.interrupt = EscalationCut(lock.escalated)
    if lock_fault:
        flow.fault("the site lock", HgsError(lock_fault))
    try:
        if args.dry_run:
            try:
                status = deps.read_ups()
                log.info("dry run: the UPS reports %s now; the %.0f s confirmation is treated as passed",
                         status.state.value, settings.timings.confirm_outage_s)
            except Exception as err:  # a rehearsal goes on without the UPS, and says so
                log.warning("dry run: the UPS cannot be read (%s); the confirmation is treated as passed", err)
        try:
            flow.run(confirm=not args.dry_run)
        except Exception as err:  # flow.run records its phases' faults itself: this is a last net
            flow.fault("the outage flow", err)
            report.finish("failed", failed=True)
    finally:
        for connection in connections.values():
            try:
                connection.close()
            except Exception:  # closing a dead connection: nothing to do
                pass
        lock.release()
    if args.dry_run and flow.plan_lines:
        ctx.out("Dry run: the outage flow would do this (times from the start of the shutdown):")
        for line in flow.plan_lines:
            ctx.out(line)
    mail_report(ctx, report, mailer, run_log)
    ctx.out(report.summary().rstrip())
    return report.exit_code()
