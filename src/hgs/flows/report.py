"""What a run did, for the mail's summary and the run history."""

import time
from dataclasses import dataclass, field

from hgs.text import shown


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
    kind: str  # "outage" or "restore"
    run_id: str
    started: float = field(default_factory=time.time)
    result: str = "running"
    failed: bool = False
    lines: list = field(default_factory=list)  # headline facts, in order
    vms: list = field(default_factory=list)
    hosts: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def fact(self, text):
        self.lines.append(text)

    def vm(self, name, outcome, seconds=None, detail="", failed=False):
        self.vms.append(Item(name, outcome, seconds, detail))
        self.failed |= failed

    def host(self, name, outcome, seconds=None, detail="", failed=False):
        self.hosts.append(Item(name, outcome, seconds, detail))
        self.failed |= failed

    def finish(self, result, failed=None):
        self.result = result
        if failed is not None:
            self.failed |= failed

    def subject(self):
        status = "FAILED" if self.failed else "ok"
        return f"{self.kind} {self.result} ({status}, run {self.run_id})"

    def summary(self):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        out = [f"hgs {self.kind}: {self.result}{' -- FAILED' if self.failed else ''}", f"started {stamp}, run {self.run_id}"]
        out += [shown(line) for line in self.lines]
        if self.vms:
            out.append("VMs:")
            out += [item.line() for item in self.vms]
        if self.hosts:
            out.append("Hosts:")
            out += [item.line() for item in self.hosts]
        out += [f"note: {shown(n)}" for n in self.notes]
        return "\n".join(out) + "\n"
