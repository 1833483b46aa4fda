"""hgs onbattery: the power failed; confirm it, then bring the site down cleanly."""

from hgs.commands._flow import add_flow_arguments, hand_off, hook_notice, mail_report, start_flow_log, watch

LOCK_WAIT_S = 600.0  # a restore checks the power between steps; a step is bounded by its own deadline


def add_arguments(parser):
    add_flow_arguments(parser)


def run(ctx):
    from hgs import runtime
    from hgs.flows.outage import OutageFlow
    from hgs.flows.report import Report
    from hgs.lock import SiteLock

    settings = ctx.settings
    args = ctx.args
    if hand_off(ctx, "onbattery", "outage"):
        return 0
    run_log = start_flow_log(ctx)
    log = run_log.logger
    hook_notice(ctx, run_log, "power_lost")
    lock = SiteLock(settings.paths.lock_dir)
    if not args.dry_run:
        if not lock.acquire(kind="outage"):
            pid, kind = lock.holder()
            if kind != "restore":
                log.info("an outage flow is already running (pid %s): this onbattery event merges into it", pid)
                return 0
            log.info("a restore is running (pid %s): it stops at its next step; the outage flow takes over", pid)
            if not lock.acquire(wait_s=LOCK_WAIT_S, kind="outage"):
                log.error("the restore (pid %s) did not stop within %.0f s; this outage flow gives up", pid, LOCK_WAIT_S)
                return 1
        lock.clear_escalation()
    log.info("onbattery: the UPS reported a power failure%s", " (dry run)" if args.dry_run else "")
    deps, mailer, connections = runtime.build(settings, log, dry_run=args.dry_run, escalated=lock.escalated)
    report = Report("outage (dry run)" if args.dry_run else "outage", run_log.run_id)
    watch(ctx, report, run_log)
    flow = OutageFlow(deps, report)
    try:
        if args.dry_run:
            try:
                status = deps.read_ups()
                log.info("dry run: the UPS reports %s now; the %.0f s confirmation is treated as passed",
                         status.state.value, settings.timings.confirm_outage_s)
            except Exception as err:  # a rehearsal goes on without the UPS, and says so
                log.warning("dry run: the UPS cannot be read (%s); the confirmation is treated as passed", err)
        flow.run(confirm=not args.dry_run)
    finally:
        for connection in connections.values():
            connection.close()
        lock.release()
    if args.dry_run and getattr(flow, "plan_lines", None):
        ctx.out("Dry run: the outage flow would do this (times from the start of the shutdown):")
        for line in flow.plan_lines:
            ctx.out(line)
    mail_report(ctx, report, mailer, run_log)
    ctx.out(report.summary().rstrip())
    return 1 if report.failed else 0
