"""Notices as things happen: NOTIFY['command'] run on each event, like NUT's NOTIFYCMD.

Events: power_lost (a hook heard it; hgs now confirms), outage_confirmed, site_down,
power_back, site_restored, failure. The program gets the event and a one-line summary in
its environment (HGS_EVENT, HGS_SUMMARY, HGS_SEVERITY, HGS_RUN_ID, HGS_HOST, HGS_TIME,
HGS_CONFIG); no shell runs it. Events in NOTIFY['mail_events'] are also mailed at once.

A notice never holds the flow up: ``emit`` hands it to a thread of its own and returns. The
program runs in its own session and is killed (its whole process group, by its PID) past
NOTIFY['timeout_s']. Notices start in the order they were emitted: each waits for the one
before it to end, or ORDER_WAIT_S at most, so a hanging program delays the next notice by
that little only. ``close`` waits for the notices still running, never past their deadline.
"""

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

SEVERITY = {"power_lost": "warning", "outage_confirmed": "warning", "site_down": "warning",
            "power_back": "info", "site_restored": "info", "failure": "critical"}
ORDER_WAIT_S = 1.0
KILL_WAIT_S = 2.0


def environment(event, summary, run_id, config_path, now=None):
    """Returns the HGS_* variables a notice's program gets (added to hgs's own environment)."""
    return {
        "HGS_EVENT": event,
        "HGS_SUMMARY": " ".join(summary.split()),  # one line, whatever the summary held
        "HGS_SEVERITY": SEVERITY.get(event, "info"),
        "HGS_RUN_ID": run_id or "",
        "HGS_HOST": socket.gethostname() or "localhost",
        "HGS_TIME": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "HGS_CONFIG": config_path or "",
    }


def run_command(argv, env, timeout_s, log, event):
    """Runs ``argv`` with ``env`` added, killed past ``timeout_s``; logs how it ended; returns its
    exit status, or None when it could not run or was killed. Never raises."""
    started = time.monotonic()
    try:
        with tempfile.TemporaryFile() as output:  # a file, not a pipe: a child left behind cannot block us
            try:
                proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                        env=dict(os.environ, **env), start_new_session=True, close_fds=True)
            except OSError as err:
                log.error("notify: cannot run %s for %s: %s (NOTIFY['command'])", argv[0], event, err.strerror or err)
                return None
            try:
                status = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                log.warning("notify: %s for %s did not end within %g s: killed (pid %d)", argv[0], event, timeout_s,
                            proc.pid)
                return None
            output.seek(0)
            tail = output.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        took = time.monotonic() - started
        if status != 0:
            log.warning("notify: %s for %s exited with status %d after %.1f s%s", argv[0], event, status, took,
                        f": {tail[-1]}" if tail else "")
        else:
            log.info("notify: %s ran for %s (%.1f s)", argv[0], event, took)
        return status
    except Exception as err:  # a notice must never break a flow
        log.error("notify: %s for %s failed: %s", argv[0], event, err)
        return None


def _kill_group(proc):
    """Kills the program and everything it started in its session (the group is named by its PID)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(KILL_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue


class Notifier:
    """Sends the notices of one hgs process. ``mail`` is a callable(subject, body) or None."""

    def __init__(self, notify_settings, log, run_id, config_path="", mail=None):
        self.settings = notify_settings
        self.log = log
        self.run_id = run_id
        self.config_path = config_path
        self.mail = mail
        self.threads = []
        self._last_done = None
        self._lock = threading.Lock()

    def wanted(self, event):
        return bool(self.settings.command and event in self.settings.events) or event in self.settings.mail_events

    def emit(self, event, summary):
        """Starts the notice for ``event`` beside the caller and returns at once. Never raises."""
        try:
            if not self.wanted(event):
                return
            env = environment(event, summary, self.run_id, self.config_path)
            self.log.info("notify: %s: %s", event, env["HGS_SUMMARY"])
            with self._lock:
                before, done = self._last_done, threading.Event()
                self._last_done = done
                thread = threading.Thread(target=self._send, args=(event, env, before, done), daemon=True,
                                          name=f"notify-{event}")
                thread.deadline = time.monotonic() + ORDER_WAIT_S * len(self.threads) + self._own_deadline_s()
                self.threads.append(thread)
            thread.start()
        except Exception as err:  # a notice must never break a flow
            self.log.error("notify: %s could not be started: %s", event, err)

    def _own_deadline_s(self):
        mail_s = 30.0 if self.settings.mail_events else 0.0
        return self.settings.timeout_s + KILL_WAIT_S * 2 + mail_s

    def _send(self, event, env, before, done):
        try:
            if before is not None:
                before.wait(ORDER_WAIT_S)
            if self.settings.command and event in self.settings.events:
                run_command(self.settings.command, env, self.settings.timeout_s, self.log, event)
            if self.mail is not None and event in self.settings.mail_events:
                try:
                    self.mail(env["HGS_SUMMARY"],
                              f"{env['HGS_SUMMARY']}\n\nevent {event} at {env['HGS_TIME']} on {env['HGS_HOST']}, "
                              f"run {env['HGS_RUN_ID']}\n")
                except Exception as err:  # logged; the notice by command went on regardless
                    self.log.error("notify: the %s mail could not be sent: %s", event, err)
        finally:
            done.set()

    def close(self, wait_s=None):
        """Waits for the notices still running, each until its own deadline (or ``wait_s`` in all)."""
        end = None if wait_s is None else time.monotonic() + wait_s
        for thread in list(self.threads):
            limit = thread.deadline if end is None else min(end, thread.deadline)
            thread.join(max(0.0, limit - time.monotonic()))
            if thread.is_alive():
                self.log.warning("notify: %s still running at exit: left behind", thread.name)
        self.threads = []


class DryRunNotifier(Notifier):
    """A rehearsal says which notices it would send, and sends none."""

    def emit(self, event, summary):
        if self.wanted(event):
            self.log.info("dry run: would notify %s: %s", event, " ".join(summary.split()))


def outcome(report):
    """Given a finished flows.report.Report, returns the (event, summary) of how it ended, or None
    when there is nothing to tell (nothing to do, stopped because the power came back)."""
    vms, hosts = report.vms, report.hosts
    if report.failed:
        bad = [f"{i.name} {i.outcome}" for i in vms + hosts if i.outcome.isupper() or "FAIL" in i.outcome]
        faults = [n[len("FAULT: "):] for n in report.notes if n.startswith("FAULT: ")]
        others = [n for n in report.notes if not n.startswith(("FAULT: ", "fault (recovered): "))]
        detail = "; ".join(bad[:5] + (faults + others)[:2]) or "see the log"
        return "failure", f"{report.label} FAILED: {report.result}: {detail} (run {report.run_id})"
    if report.result.startswith("site down"):
        forced = sum(1 for i in vms if i.outcome in ("forced", "reset", "shed (forced)", "shed (reset)"))
        return "site_down", (f"site down: {len(vms)} VM(s) shut down ({forced} forced), {len(hosts)} host(s) "
                             f"confirmed down (run {report.run_id})")
    if report.result == "site restored":
        started = sum(1 for i in vms if i.outcome in ("started", "resumed", "already running"))
        return "site_restored", f"site restored: {started} VM(s) running again (run {report.run_id})"
    return None
