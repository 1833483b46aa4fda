"""hgs doshutdown: this box is about to halt; force everything down NOW, and return in time."""

import threading
import time

from hgs.commands._flow import add_flow_arguments, mail_report, record_event, start_flow_log


def add_arguments(parser):
    add_flow_arguments(parser)
    parser.add_argument("--only-if-critical", action="store_true",
                        help="read the UPS first and go on only if it is on battery (or FSD); on line, log and ignore "
                             "the event (NUT's LOWBATT comes with the LB flag whatever the line state)")


def critical(ctx, settings):
    """For --only-if-critical: reads the configured UPS; returns True when it is on battery,
    low battery or FSD. Otherwise logs why the event is ignored and returns False; an unreadable
    UPS raises UpsError (upsmon's own SHUTDOWNCMD stays the backstop when it is truly critical)."""
    from hgs.errors import UpsError
    from hgs.ups import reader_for

    try:
        status = reader_for(settings.ups)()
    except UpsError as err:
        ctx.start_log().logger.error("doshutdown --only-if-critical: the UPS %s cannot be read (%s): nothing is "
                                     "forced; upsmon's SHUTDOWNCMD runs 'hgs doshutdown' if the UPS is critical",
                                     settings.ups.address, err)
        raise
    if status.on_battery:
        return True
    log = ctx.start_log().logger
    log.warning("doshutdown --only-if-critical: the UPS %s reads %s (%s): not critical; the event is logged and "
                "ignored, nothing is forced", settings.ups.address, status.state.value, status.raw or "no status")
    return False


def run(ctx):
    from hgs import runtime
    from hgs.flows.outage import OutageFlow
    from hgs.flows.report import Report
    from hgs.lock import SiteLock

    start = time.monotonic()
    settings = ctx.settings
    if ctx.args.only_if_critical and not critical(ctx, settings):
        return 0
    if not ctx.args.dry_run:
        record_event(settings, "doshutdown")
    bound_s = settings.timings.doshutdown_bound_s
    run_log = start_flow_log(ctx)
    log = run_log.logger
    lock = SiteLock(settings.paths.lock_dir)
    if not ctx.args.dry_run and not lock.acquire(kind="doshutdown"):
        holder, kind = lock.holder()
        lock.escalate()
        log.warning("doshutdown: this box is halting: told the running flow (pid %s) to force everything now", holder)
        if not lock.acquire(wait_s=max(0.0, bound_s - (time.monotonic() - start) - 1.0), kind="doshutdown"):
            log.warning("doshutdown: returning after %.1f s (bound %.0f s); the flow goes on while this box halts",
                        time.monotonic() - start, bound_s)
            return 0
        log.info("doshutdown: the running flow finished within %.1f s", time.monotonic() - start)
        lock.clear_escalation()
        if kind != "restore":
            lock.release()
            return 0
        log.warning("doshutdown: the restore stopped; forcing down what it woke")  # the lock is ours now
    log.warning("doshutdown: this box is halting: forcing every VM and host down within %.0f s", bound_s)
    deps, mailer, connections = runtime.build(settings, log, dry_run=ctx.args.dry_run, escalated=lambda: True)
    report = Report("forced shutdown (dry run)" if ctx.args.dry_run else "forced shutdown", run_log.run_id)
    flow = OutageFlow(deps, report)
    worker = threading.Thread(target=_run_flow, args=(flow, log), daemon=True)
    worker.start()
    # keep a little of the bound for the mail; the box halts right after we return
    worker.join(max(0.0, bound_s * 0.85 - (time.monotonic() - start)))
    if worker.is_alive():
        log.error("doshutdown: bound reached after %.1f s; returning so this box can halt", time.monotonic() - start)
        report.finish("cut short by the doshutdown bound", failed=True)
    else:
        for connection in connections.values():
            connection.close()
    lock.release()
    mail_report(ctx, report, mailer, run_log)
    ctx.out(report.summary().rstrip())
    return 1 if report.failed else 0


def _run_flow(flow, log):
    try:
        flow.run(confirm=False)
    except Exception:  # the box is halting: record, never hang
        log.exception("doshutdown: the forced flow failed")
        flow.report.finish("failed", failed=True)
