"""hgs offbattery: the power is back; once it is stable, wake the hosts and start exactly
the VMs that were running. Also the boot-time resume: with nothing shut down, it does nothing."""

from hgs.commands._flow import (add_flow_arguments, hand_off, hook_notice, hurry_on_sigterm, mail_report,
                               start_flow_log, watch)

LOCK_WAIT_S = 4 * 3600.0  # a running outage flow finishes first; every step of it is bounded


def add_arguments(parser):
    add_flow_arguments(parser)


def run(ctx):
    from hgs import wiring as runtime
    from hgs.flows.report import Report
    from hgs.flows.restore import RestoreFlow
    from hgs.box.lock import SiteLock

    settings = ctx.settings
    args = ctx.args
    if hand_off(ctx, "offbattery", "restore"):
        return 0
    run_log = start_flow_log(ctx)
    log = run_log.logger
    hook_notice(ctx, run_log, "power_back")
    lock = SiteLock(settings.paths.lock_dir)
    if not args.dry_run and not lock.acquire(kind="restore"):
        pid, kind = lock.holder()
        if kind == "restore":
            log.info("a restore is already running (pid %s): this offbattery event merges into it", pid)
            return 0
        log.info("a %s flow is running (pid %s): the restore waits for it to finish", kind, pid)
        if not lock.acquire(wait_s=LOCK_WAIT_S, kind="restore"):
            log.error("the %s flow (pid %s) still runs after %.0f s: restore not started", kind, pid, LOCK_WAIT_S)
            return 1
    if not args.dry_run:
        lock.clear_escalation()  # we hold the lock: a request to hurry is from a flow that ended
        hurry_on_sigterm(lock, log, "stopping the restore at once; its snapshot is kept")
    log.info("offbattery: the power is back%s", " (dry run)" if args.dry_run else "")
    deps, mailer, connections = runtime.build(settings, log, dry_run=args.dry_run,
                                              escalated=(lambda: False) if args.dry_run else lock.escalated)
    report = Report("restore (dry run)" if args.dry_run else "restore", run_log.run_id)
    watch(ctx, report, run_log)
    flow = RestoreFlow(deps, report)
    for connection in connections.values():
        connection.interrupt = flow.stop_reason  # power lost or doshutdown cuts a waiting xe call too
    try:
        flow.run()
    finally:
        for connection in connections.values():
            connection.close()
        lock.release()
    if report.result == "nothing to do" and not args.dry_run:
        ctx.out("hgs offbattery: nothing was shut down by hgs: nothing to restore")
        run_log.logger.info("restore flow finished: nothing to do")
        return 0
    if args.dry_run and getattr(flow, "plan_lines", None):
        ctx.out("Dry run: the restore flow would do this:")
        for line in flow.plan_lines:
            ctx.out(line)
    mail_report(ctx, report, mailer, run_log)
    ctx.out(report.summary().rstrip())
    return 1 if report.failed else 0
