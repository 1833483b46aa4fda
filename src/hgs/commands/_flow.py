"""What the flow commands share: detaching from the hook, the lock, the mail at the end."""

import os
import subprocess
import sys

from hgs.errors import MailError


def add_flow_arguments(parser):
    parser.add_argument("--dry-run", action="store_true",
                        help="rehearse: real reads (UPS, SSH, xe lists), no change anywhere, waits treated as done; "
                             "prints the timeline")
    parser.add_argument("--foreground", action="store_true",
                        help="run the flow in this process (by default a hook's call returns at once and the flow "
                             "runs detached, logging to the log file)")


def record_event(settings, event):
    """Notes a hook's event for the flows (see hgs.events); never fails the hook."""
    from hgs import events

    events.record(settings.paths.lock_dir, event)


def detach(ctx, command):
    """Starts ``hgs COMMAND --foreground`` in its own session and returns its PID."""
    argv = [sys.executable, "-m", "hgs", "--config", os.path.abspath(ctx.config_path), command, "--foreground"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)
    return proc.pid


def hand_off(ctx, command, flow_name):
    """As a hook: records the event, starts the flow detached and says so; returns True then.
    Returns False for --foreground and --dry-run, which run the flow in this process."""
    if ctx.args.foreground or ctx.args.dry_run:
        return False
    record_event(ctx.settings, command)  # first: a running flow hears of it at its next look
    pid = detach(ctx, command)
    ctx.out(f"hgs {command}: {flow_name} flow started in the background (pid {pid}); see {ctx.settings.paths.log_file}")
    return True


def start_flow_log(ctx):
    """Starts the run's log; a dry run shows every 'would' line and writes no log file."""
    if ctx.args.dry_run:
        ctx.verbose = max(ctx.verbose, 1)  # a rehearsal is read
    return ctx.start_log(to_file=not ctx.args.dry_run)


def mail_report(ctx, report, mailer, run_log):
    """Records the run in the history, then mails the summary and the full log when MAIL['when']
    asks; a mail failure is logged only. A dry run leaves no history."""
    import time

    from hgs import history, mail

    if "dry run" not in report.kind:
        history.record(ctx.settings.paths.state_dir, report, ctx.args.command, time.time())
    run_log.logger.log(40 if report.failed else 20, "%s flow finished: %s%s", report.kind, report.result,
                       " (FAILED)" if report.failed else "")
    settings = ctx.settings.mail
    if not mail.should_send(settings, report.failed):
        return
    body = report.summary() + "\nFull log:\n\n" + run_log.text()
    try:
        mailer.send(report.subject(), body)
    except MailError as err:
        run_log.logger.error("the run's mail could not be sent: %s (everything is in the log file)", err)
