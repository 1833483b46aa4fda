"""What a run did, for the mail's summary, the run history, the notices and `hgs status`.

A rehearsal's report (``Report(kind, run_id, rehearsal=True)``) says "dry run" in its title,
summary and mail; code asks ``report.rehearsal``, never the text.

Whoever runs a flow may set ``on_event`` (callable(event, summary): a notice such as
outage_confirmed) and ``on_change`` (callable(report): after each VM, host or result), so the
flows stay free of notice and progress plumbing; a failing listener never stops a flow.
"""

import time
from dataclasses import dataclass, field

from hgs.box.text import shown

NOTHING_TO_DO = "nothing to do"  # the result of a flow that found nothing to do


@dataclass
class Item:
    name: str
    outcome: str
    seconds: float | None = None
    detail: str = ""

    def line(self):
        took = "" if self.seconds is None else f" in {self.seconds:.1f} s"
        detail = f" ({shown(self.detail)})" if self.detail else ""
        return f"  {shown(self.name)}: {shown(self.outcome)}{took}{detail}"


@dataclass
class Report:
    kind: str  # "outage", "restore" or "forced shutdown"
    run_id: str
    rehearsal: bool = False  # a dry run: nothing was changed
    started: float = field(default_factory=time.time)
    result: str = "running"
    failed: bool = False
    lines: list = field(default_factory=list)  # headline facts, in order
    vms: list = field(default_factory=list)
    hosts: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    faults: list = field(default_factory=list)  # "where: what" of every fault the run met, in order
    recovered: int = 0  # how many of them a retry or a fallback overcame
    on_event: object = field(default=None, repr=False, compare=False)
    on_change: object = field(default=None, repr=False, compare=False)

    @property
    def label(self):
        """What the mail, the summary and the notices call this run: its kind, and "(dry run)"."""
        return f"{self.kind} (dry run)" if self.rehearsal else self.kind

    @property
    def idle(self):
        """True when the flow found nothing to do (e.g. a restore with nothing shut down)."""
        return self.result == NOTHING_TO_DO

    def event(self, name, summary):
        """Tells the listener that ``name`` happened (a notice); never raises."""
        if self.on_event is not None:
            try:
                self.on_event(name, summary)
            except Exception:  # a notice must never stop a flow
                pass

    def _changed(self):
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception:  # progress for `hgs status` must never stop a flow
                pass

    def fact(self, text):
        self.lines.append(text)

    def vm(self, name, outcome, seconds=None, detail="", failed=False):
        self.vms.append(Item(name, outcome, seconds, detail))
        self.failed |= failed
        self._changed()

    def host(self, name, outcome, seconds=None, detail="", failed=False):
        self.hosts.append(Item(name, outcome, seconds, detail))
        self.failed |= failed
        self._changed()

    def fault(self, where, text, recovered=False):
        """Records a fault: in the notes (so the mail and the run history name it) and, unless a
        retry or a fallback overcame it, as a failure of the run."""
        line = f"{where}: {text}"
        self.faults.append(line)
        if recovered:
            self.recovered += 1
            self.notes.append(f"fault (recovered): {line}")
        else:
            self.failed = True
            self.notes.append(f"FAULT: {line}")

    def exit_code(self):
        """Returns the exit code of the command that ran this flow: 1 when anything failed."""
        return 1 if self.failed else 0

    def finish(self, result, failed=None):
        self.result = result
        if failed is not None:
            self.failed |= failed
        self._changed()

    def subject(self):
        status = "FAILED" if self.failed else "ok"
        return f"{self.label} {self.result} ({status}, run {self.run_id})"

    def summary(self):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        out = [f"hgs {self.label}: {self.result}{' -- FAILED' if self.failed else ''}", f"started {stamp}, run {self.run_id}"]
        out += [shown(line) for line in self.lines]
        if self.vms:
            out.append("VMs:")
            out += [item.line() for item in self.vms]
        if self.hosts:
            out.append("Hosts:")
            out += [item.line() for item in self.hosts]
        out += [f"note: {shown(n)}" for n in self.notes]
        return "\n".join(out) + "\n"
