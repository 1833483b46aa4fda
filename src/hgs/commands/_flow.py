"""What the flow commands share: detaching from the hook, the lock, the notices, the mail at the end."""

import argparse
import os
import re
import shutil
import subprocess
import sys

from hgs.errors import MailError


def add_flow_arguments(parser, detaches=True):
    """The flow options; ``detaches`` is False for doshutdown, which always runs in its own process."""
    parser.add_argument("--dry-run", action="store_true",
                        help="rehearse: real reads (UPS, SSH, xe lists), no change anywhere, waits treated as done; "
                             "prints the timeline")
    parser.add_argument("--foreground", action="store_true",
                        help="run the flow in this process (by default a hook's call returns at once and the flow "
                             "runs detached, logging to the log file)" if detaches else
                        "accepted and ignored: doshutdown always runs in this process and returns within "
                        "TIMINGS['doshutdown_bound_s']")
    parser.add_argument("--run-id", type=_run_id, help=argparse.SUPPRESS)  # a detached flow's, given by its hook


def record_event(settings, event):
    """Notes a hook's event for the flows (see hgs.box.events); never fails the hook."""
    from hgs.box import events

    events.record(settings.paths.lock_dir, event)


SYSTEMD_DIR = "/run/systemd/system"  # present when systemd is PID 1 (sd_booted())
SYSTEMD_RUN_TIMEOUT_S = 15.0
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")


def _run_id(text):
    if not _RUN_ID.match(text):
        raise argparse.ArgumentTypeError(f"not a run id like 20261121-080309-3fa2: {text!r}")
    return text


def flow_argv(config_path, command, run_id):
    """Returns the command line of a detached flow: an isolated interpreter (-I: no current
    folder, script folder or PYTHON* variables on its path), so that no ``hgs`` package planted
    in the folder a hook or a person ran hgs from is ever imported as root."""
    return [sys.executable, "-I", "-m", "hgs", "--config", os.path.abspath(config_path), command, "--foreground",
            "--run-id", run_id]


def unit_argv(command, run_id, argv, systemd_run):
    """Returns the systemd-run command line starting ``argv`` as a transient unit of its own,
    hgs-COMMAND-RUNID.service, out of the UPS daemon's cgroup (a restart of apcupsd.service or
    nut-monitor.service then leaves it running); collected when done, even if it failed."""
    return [systemd_run, f"--unit=hgs-{command}-{run_id}", "--collect", "--quiet", "--no-ask-password",
            f"--description=hgs {command} flow (run {run_id})", "--property=KillMode=mixed",
            "--property=TimeoutStopSec=90", "--working-directory=/", "--", *argv]


def detach(ctx, command, systemd_dir=SYSTEMD_DIR, systemd_run=None):
    """Starts ``hgs COMMAND --foreground`` so that it outlives its caller and the caller's
    daemon: as its own transient systemd unit when systemd runs this box, else in its own
    session. Returns (how, run id): 'unit NAME' or 'pid N'."""
    from hgs.box.log import new_run_id

    run_id = new_run_id()
    argv = flow_argv(ctx.config_path, command, run_id)
    systemd_run = systemd_run or shutil.which("systemd-run")
    note = ""
    if os.path.isdir(systemd_dir) and systemd_run:
        unit_cmd = unit_argv(command, run_id, argv, systemd_run)
        try:
            result = subprocess.run(unit_cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd="/",
                                    timeout=SYSTEMD_RUN_TIMEOUT_S)
            if result.returncode == 0:
                return f"unit hgs-{command}-{run_id}.service", run_id
            note = f"systemd-run failed (exit {result.returncode}: {result.stderr.strip()[-200:]})"
        except (OSError, subprocess.TimeoutExpired) as err:
            note = f"systemd-run failed ({err})"
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True, cwd="/")
    return f"pid {proc.pid}" + (f"; {note}, started in its own session instead" if note else ""), run_id


def hand_off(ctx, command, flow_name):
    """As a hook: records the event, starts the flow detached and returns True then; says so
    only to a person (-v, or a terminal): a hook's or cron's output is mailed. Returns False for
    --foreground, which runs the flow in this process (as a rehearsal always does)."""
    if ctx.args.foreground:
        return False
    record_event(ctx.settings, command)  # first: a running flow hears of it at its next look
    how, run_id = detach(ctx, command)
    if "systemd-run failed" in how:  # worth a line even from a hook: a daemon restart could end this flow
        print(f"hgs {command}: {how.split('; ', 1)[1]}", file=ctx.stderr)
    if ctx.verbose or ctx.stdout.isatty():
        ctx.out(f"hgs {command}: {flow_name} flow started in the background (run {run_id}, {how}); "
                f"see {ctx.settings.paths.log_file}")
    return True


RECENT_POWER_LOST_S = 24 * 3600.0


def notifier(ctx, run_log, kind=None):
    """Returns this process's Notifier, made once as ``kind`` (the run's wiring says which: a
    rehearsal's only says what it would send); Context.execute waits for its notices, each
    within its deadline, before the process ends."""
    from hgs.net import mail as mailmod
    from hgs.net import notify

    if getattr(ctx, "notifier", None) is None:
        settings = ctx.settings
        kind = kind or notify.Notifier
        ctx.notifier = kind(settings.notify, run_log.logger, run_log.run_id, os.path.abspath(ctx.config_path),
                            mail=lambda subject, body: mailmod.send(settings.mail, subject, body))
    return ctx.notifier


def hook_notice(ctx, run_log, event, kind=None):
    """Sends the notice of a hook's event at once: power_lost always, power_back when an outage
    was heard of or the site is down by hgs (not at every boot of this box)."""
    from hgs.box import events
    from hgs.box.state import IDLE, StateFile
    from hgs.errors import HgsError

    settings = ctx.settings
    notices = notifier(ctx, run_log, kind)
    if event == "power_lost":
        notices.emit("power_lost", "power lost: the UPS runs on battery; hgs confirms the outage for "
                     f"{settings.timings.confirm_outage_s:g} s before shutting anything down")
        return
    try:
        phase = StateFile(settings.paths.state_dir).load().get("phase")
    except HgsError:
        phase = None
    import time

    heard = events.last(settings.paths.lock_dir, "onbattery", time.time() - RECENT_POWER_LOST_S) is not None
    if phase not in (IDLE, None):
        notices.emit("power_back", "power back: once it is stable for "
                     f"{settings.timings.restore_confirm_s:g} s, hgs wakes the hosts and starts the VMs it shut down")
    elif heard:
        notices.emit("power_back", "power back: the UPS is on line again; nothing was shut down by hgs")


def watch(ctx, report, run_log, rig):
    """Connects a flow's report to the notices (outage_confirmed, ...) and, for a real run, to the
    progress file `hgs status` reads (each VM and host as it is done)."""
    report.on_event = notifier(ctx, run_log, rig.notifier_class).emit
    rig.watch(report)


def mail_report(ctx, report, mailer, run_log, rig=None):
    """Records the run in the history (a real run: see hgs.wiring), then mails the summary and
    the full log when MAIL['when'] asks; a mail failure is logged only."""
    from hgs import wiring
    from hgs.net import mail
    from hgs.net import notify

    rig = rig or wiring.for_run(ctx.settings, rehearsal=report.rehearsal)
    outcome = notify.outcome(report)
    if outcome is not None:
        notifier(ctx, run_log, rig.notifier_class).emit(*outcome)
    rig.record(report, ctx.args.command, run_log.logger)
    run_log.logger.log(40 if report.failed else 20, "%s flow finished: %s%s", report.label, report.result,
                       " (FAILED)" if report.failed else "")
    settings = ctx.settings.mail
    if not mail.should_send(settings, report.failed):
        return
    body = report.summary() + "\nFull log:\n\n" + run_log.text()
    try:
        mailer.send(report.subject(), body)
    except MailError as err:
        run_log.logger.error("the run's mail could not be sent: %s (everything is in the log file)", err)
