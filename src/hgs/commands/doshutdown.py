"""hgs doshutdown: this box is about to halt; force everything down NOW, and return in time."""

import dataclasses
import threading
import time

from hgs.commands._flow import add_flow_arguments, mail_report, record_event, start_flow_log, watch


def add_arguments(parser):
    add_flow_arguments(parser, detaches=False)
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


def forced_settings(settings):
    """Returns the settings the forced flow runs with: every remote wait cut to fit the bound."""
    from hgs.flows import plan

    return dataclasses.replace(settings, timings=plan.escalated_timings(settings.timings))


def run(ctx):
    from hgs import wiring as runtime
    from hgs.errors import HgsError
    from hgs.flows.outage import OutageFlow
    from hgs.flows.report import Report
    from hgs.box.lock import LockError, SiteLock

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
    lock_fault = None
    if not ctx.args.dry_run:
        try:
            held = lock.acquire(kind="doshutdown")
        except LockError as err:  # the box is halting: force everything down without the lock
            held, lock_fault = True, f"{err}; the forced flow ran without the site lock"
            log.error("doshutdown: %s: forcing everything down WITHOUT the site lock", err)
        if not held:
            holder, kind = lock.holder()
            try:
                lock.escalate()
            except LockError as err:
                lock_fault = f"{err}: the running flow (pid {holder}) could not be told to hurry; forced here too"
                log.error("doshutdown: %s", lock_fault)
            if lock_fault is None:
                log.warning("doshutdown: this box is halting: told the running flow (pid %s) to force everything "
                            "now", holder)
                if not lock.acquire(wait_s=max(0.0, bound_s - (time.monotonic() - start) - 1.0), kind="doshutdown"):
                    log.warning("doshutdown: returning after %.1f s (bound %.0f s); the flow goes on while this box "
                                "halts", time.monotonic() - start, bound_s)
                    return 0
                log.info("doshutdown: the running flow finished within %.1f s", time.monotonic() - start)
                lock.clear_escalation()
                if kind != "restore":
                    lock.release()
                    return 0
                log.warning("doshutdown: the restore stopped; forcing down what it woke")  # the lock is ours now
    log.warning("doshutdown: this box is halting: forcing every VM and host down within %.0f s", bound_s)
    deps, mailer, connections = runtime.build(forced_settings(settings), log, dry_run=ctx.args.dry_run,
                                              escalated=lambda: True)
    report = Report("forced shutdown (dry run)" if ctx.args.dry_run else "forced shutdown", run_log.run_id)
    watch(ctx, report, run_log)
    flow = OutageFlow(deps, report)
    if lock_fault:
        flow.fault("the site lock", HgsError(lock_fault))
    worker = threading.Thread(target=_run_flow, args=(flow, log), daemon=True)
    worker.start()
    # keep a little of the bound for the mail; the box halts right after we return
    worker.join(max(0.0, bound_s * 0.85 - (time.monotonic() - start)))
    if worker.is_alive():
        log.error("doshutdown: bound reached after %.1f s; returning so this box can halt", time.monotonic() - start)
        report.finish("cut short by the doshutdown bound", failed=True)
    else:
        for connection in connections.values():
            try:
                connection.close()
            except Exception:  # closing a dead connection: nothing to do
                pass
    lock.release()
    mail_report(ctx, report, mailer, run_log)
    if ctx.notifier is not None:  # the box halts right after: notices get what is left of the bound
        ctx.notifier.close(max(0.0, bound_s - (time.monotonic() - start) - 0.5))
    ctx.out(report.summary().rstrip())
    return report.exit_code()


def _run_flow(flow, log):
    try:
        flow.run(confirm=False)
    except Exception as err:  # the box is halting: record, never hang (flow.run records its own faults)
        flow.fault("the forced flow", err)
        flow.report.finish("failed", failed=True)
