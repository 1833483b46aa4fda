"""Building a flow's dependencies once, at start-up: the ONE place a dry run differs.

A real run gets the SSH-backed hypervisors, the prober, the real clock, the state file and
sendmail. A dry run gets the same readers, and, for everything that would change the world,
twins that log 'dry run: would ...' (hypervisor changes, state writes, mails, WOL packets),
with waits treated as done.
"""

from hgs.net import mail as mailmod
from hgs.net.addresses import AddressBook
from hgs.box.clock import Clock, InstantClock
from hgs.flows.outage import Deps
from hgs.hypervisors.rehearsal import DryRunHypervisor
from hgs.hypervisors.xen.backend import Hypervisor, open_hypervisor  # noqa: F401 (the factory inspect uses)
from hgs.net.probe import DryRunProber, Prober
from hgs.net.ssh import Connection
from hgs.box.state import StateFile
from hgs.ups import reader_for
from hgs.net.wake import DryRunWaker, Waker


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


def side_by_side(call, items):
    """Runs ``call(item)`` for every item at the same time (threads: each is a remote call that
    mostly waits); returns the results in order."""
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    if len(items) <= 1:
        return [call(item) for item in items]
    results, futures = [None] * len(items), {}
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        for index, item in enumerate(items):
            try:
                futures[index] = pool.submit(call, item)
            except RuntimeError:  # no thread to be had (a box short of resources): it runs here, in turn
                results[index] = call(item)
        for index, future in futures.items():
            results[index] = future.result()
    return results


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
