"""hgs doshutdown: this box is about to halt; force everything down NOW, and return in time."""

import dataclasses
import logging
import time

from hgs.commands._flow import add_flow_arguments
from hgs.commands.flowrun import GO, Entry, FlowSpec, run_flow


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


def take_lock(lock, log, bound_s, started):
    """Takes the site lock for the forced flow, or asks the flow holding it to hurry (escalation)
    and waits for it within the bound. Returns an Entry: an outage flow that finished in time
    ends this command (exit 0: it did the work); a restore that stopped leaves the lock to this
    flow, which forces down what it woke; one still running at the bound is left to go on
    while this box halts (exit 0). A lock that cannot be taken never stops the forced flow."""
    from hgs.box.lock import LockError

    try:
        held = lock.acquire(kind="doshutdown")
    except LockError as err:  # the box is halting: force everything down without the lock
        log.error("doshutdown: %s: forcing everything down WITHOUT the site lock", err)
        return Entry(True, None, f"{err}; the forced flow ran without the site lock")
    if held:
        return GO
    holder, kind = lock.holder()
    try:
        lock.escalate()
    except LockError as err:
        fault = f"{err}: the running flow (pid {holder}) could not be told to hurry; forced here too"
        log.error("doshutdown: %s", fault)
        return Entry(True, None, fault)
    log.warning("doshutdown: this box is halting: told the running flow (pid %s) to force everything now", holder)
    if not lock.acquire(wait_s=max(0.0, bound_s - (time.monotonic() - started) - 1.0), kind="doshutdown"):
        log.warning("doshutdown: returning after %.1f s (bound %.0f s); the flow goes on while this box halts",
                    time.monotonic() - started, bound_s)
        return Entry(False, 0)
    log.info("doshutdown: the running flow finished within %.1f s", time.monotonic() - started)
    lock.clear_escalation()
    if kind != "restore":
        lock.release()
        return Entry(False, 0)
    log.warning("doshutdown: the restore stopped; forcing down what it woke")  # the lock is ours now
    return GO


def spec(settings, started):
    from hgs.flows.outage import OutageFlow

    bound_s = settings.timings.doshutdown_bound_s
    return FlowSpec(
        command="doshutdown", kind="forced shutdown", flow_class=OutageFlow,
        take_lock=lambda lock, log: take_lock(lock, log, bound_s, started),
        begins=f"doshutdown: this box is halting: forcing every VM and host down within {bound_s:.0f} s",
        begins_level=logging.WARNING, on_signal="already forcing every VM and host down",
        detaches=False, records_event=True, confirm=lambda rig, deps, log: False, forced=True,
        settings=forced_settings, bound_s=bound_s, started=started)


def run(ctx):
    started = time.monotonic()
    if ctx.args.only_if_critical and not critical(ctx, ctx.settings):
        return 0
    return run_flow(ctx, spec(ctx.settings, started))
