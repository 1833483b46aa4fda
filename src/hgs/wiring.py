"""Building a flow's dependencies once, at start-up: the ONE place a dry run differs.

A real run gets the SSH-backed hypervisors, the prober, the real clock, the state file and
sendmail. A dry run gets the same readers, and, for everything that would change the world,
twins that log 'dry run: would ...' (hypervisor changes, state writes, mails, WOL packets),
with waits treated as done.

``for_run`` returns what a flow command is wired to around the flow: ``LiveRun`` (the site
lock, the log file, notices, progress for `hgs status`, the run history and metrics) or its
twin ``Rehearsal`` (a lock of its own that never waits, the log on stderr only, notices and
mails only said, nothing recorded). The commands never ask which one they have.
"""

from hgs.box.clock import Clock, InstantClock
from hgs.box.state import StateFile
from hgs.box.threads import side_by_side
from hgs.flows.outage import Deps
from hgs.hypervisors.rehearsal import DryRunHypervisor
from hgs.hypervisors.xen.backend import Hypervisor, open_hypervisor  # noqa: F401 (the factory inspect uses)
from hgs.net import mail as mailmod
from hgs.net import notify
from hgs.net.addresses import AddressBook
from hgs.net.probe import DryRunProber, Prober
from hgs.net.ssh import Connection
from hgs.net.wake import DryRunWaker, Waker
from hgs.ups import reader_for


class Mailer:
    def __init__(self, settings, log):
        self.settings, self.log = settings, log

    def send(self, subject, body):
        mailmod.send(self.settings, subject, body)
        self.log.info("mail '%s' handed to sendmail for %s", subject, ", ".join(self.settings.to))


class DryRunMailer(Mailer):
    def send(self, subject, body):
        self.log.info("dry run: would mail '%s' to %s", subject, ", ".join(self.settings.to))


class DryRunStateFile:
    def __init__(self, real, log):
        self.real, self.log = real, log

    def load(self):
        return self.real.load()

    def save(self, data):
        self.log.info("dry run: would write the state file %s (phase %s)", self.real.path, data.get("phase"))
        return data


def build(settings, log, dry_run=False, escalated=lambda: False):
    """Returns (Deps, Mailer, connections) for a flow."""
    from hgs.box import events

    def last_event(kind, since):
        return events.last(settings.paths.lock_dir, kind, since)

    timings = settings.timings
    # the hosts' names resolved now, while the site's name service still runs (it may be a VM of it)
    book = AddressBook(settings.paths.state_dir, log, save=not dry_run)
    book.refresh([h.address for h in settings.hosts])
    connections = {h.name: Connection(h, timings.ssh_connect_timeout_s, log, addresses=book) for h in settings.hosts}
    hypervisors = {h.name: Hypervisor(h, connections[h.name], timings.xe_timeout_s, log) for h in settings.hosts}
    state_file = StateFile(settings.paths.state_dir)
    if dry_run:
        overlay = {}  # the VM power states the rehearsal pretended to change, shared by every host
        woken = set()  # the hosts it pretended to wake
        deps = Deps(settings, reader_for(settings.ups),
                    {n: DryRunHypervisor(hv, log, overlay) for n, hv in hypervisors.items()},
                    DryRunProber(woken, Prober(addresses=book)), InstantClock(), DryRunStateFile(state_file, log), log,
                    escalated, DryRunWaker(log, woken), last_event, side_by_side)
        return deps, DryRunMailer(settings.mail, log), connections
    deps = Deps(settings, reader_for(settings.ups), hypervisors, Prober(addresses=book), Clock(), state_file, log,
                escalated, Waker(log), last_event, side_by_side)
    return deps, Mailer(settings.mail, log), connections


class LiveRun:
    """A real run of a flow command, wired to this box and the site."""

    rehearsal = False
    note = ""  # added to the run's first log line
    detaches = True  # a hook's call hands the flow to a process of its own
    min_verbose = 0
    log_to_file = True  # the log file and syslog
    notifier_class = notify.Notifier

    def __init__(self, settings):
        self.settings = settings

    def lock(self):
        """Returns the site lock (hgs.box.lock.SiteLock), not taken yet."""
        from hgs.box.lock import SiteLock

        return SiteLock(self.settings.paths.lock_dir)

    def record_event(self, event):
        """Notes a hook's event for the flows (see hgs.box.events); never fails."""
        from hgs.box import events

        events.record(self.settings.paths.lock_dir, event)

    def build(self, log, escalated, settings=None):
        """Returns (Deps, Mailer, connections) for the flow (``settings``: the run's own, e.g. forced timings)."""
        return build(settings or self.settings, log, escalated=escalated)

    def outage_confirmation(self, deps, log):
        """Returns whether the outage flow confirms the outage itself (a real run: yes)."""
        return True

    def watch(self, report):
        """Connects the report to the progress file `hgs status` reads (each VM and host as it is done)."""
        from hgs.box import progress

        state_dir = self.settings.paths.state_dir
        report.on_change = progress.Writer(state_dir)
        progress.write(state_dir, report)

    def record(self, report, command, log):
        """Records the finished run in the history and the metrics textfile; a failure is logged only."""
        import time

        from hgs.box import history, metrics

        history.record(self.settings.paths.state_dir, report, command, time.time())
        textfile = self.settings.metrics.textfile
        if textfile:
            try:
                metrics.write_textfile(textfile, self.settings.paths.state_dir)
            except OSError as err:
                log.error("metrics: cannot write %s: %s", textfile, err.strerror or err)
            except Exception as err:  # a damaged history must never cost the run's mail
                log.error("metrics: cannot write %s: %s: %s", textfile, type(err).__name__, err)

    def show_plan(self, out, title, lines):
        """A real run's timeline is in its log only."""


class RehearsalLock:
    """A rehearsal's site lock: never waits for a real flow nor stops one, never asked to hurry
    through a file (a signal to the rehearsal itself still is, see hgs.commands.flowrun)."""

    def acquire(self, wait_s=0.0, kind=None):
        return True

    def holder(self):
        return None, None

    def release(self):
        pass

    def escalate(self):
        pass

    def escalated(self):
        return False

    def clear_escalation(self):
        pass


class Rehearsal(LiveRun):
    """A dry run: the same reads, the twins of every change, nothing recorded; read on stderr."""

    rehearsal = True
    note = " (dry run)"
    detaches = False  # a rehearsal is read as it runs
    min_verbose = 1  # every 'would' line shown
    log_to_file = False
    notifier_class = notify.DryRunNotifier

    def lock(self):
        return RehearsalLock()

    def record_event(self, event):
        pass

    def build(self, log, escalated, settings=None):
        return build(settings or self.settings, log, dry_run=True, escalated=escalated)

    def outage_confirmation(self, deps, log):
        """Reads the UPS once and treats the confirmation as passed (the power is most likely on)."""
        try:
            status = deps.read_ups()
            log.info("dry run: the UPS reports %s now; the %.0f s confirmation is treated as passed",
                     status.state.value, self.settings.timings.confirm_outage_s)
        except Exception as err:  # a rehearsal goes on without the UPS, and says so
            log.warning("dry run: the UPS cannot be read (%s); the confirmation is treated as passed", err)
        return False

    def watch(self, report):
        pass

    def record(self, report, command, log):
        pass

    def show_plan(self, out, title, lines):
        if title and lines:
            out(f"Dry run: {title}")
            for line in lines:
                out(line)


def for_run(settings, rehearsal=False):
    """Returns the LiveRun, or the Rehearsal for a dry run: the one place a command's --dry-run is read."""
    return (Rehearsal if rehearsal else LiveRun)(settings)
