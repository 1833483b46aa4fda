"""What every flow has: its dependencies, the report it tells, its log, its timings, its plan."""


class Flow:
    """A flow gets everything from ``deps`` (hgs.flows.outage.Deps) and tells ``report`` what
    happened; ``plan_lines`` is the timeline a person reads (a dry run prints it)."""

    def __init__(self, deps, report):
        self.d = deps
        self.report = report
        self.log = deps.log
        self.timings = deps.settings.timings
        self.plan_lines = []
