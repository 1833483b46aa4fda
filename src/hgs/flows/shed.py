"""Between the confirmation and the main shutdown: load shedding and the runtime trigger.

Once the outage is confirmed, the VMs of VMS['shed'] go down (at once, or when the battery
falls to their rule's charge or runtime) while the rest keeps running. The main shutdown
starts when TIMINGS['main_trigger'] says: at once ("window": the confirmation was the wait),
or when the UPS's runtime left falls to the plan's worst case plus UPS['runtime_reserve_s']
("runtime"). If the power returns first, the VMs hgs shed are started again and nothing else
is touched; the power-back test is the confirmation's (``OutageFlow.power_back``).

Pool HA is left on while shedding: xapi restarts only VMs that stop unexpectedly, never one
shut down through the API, so a shed VM stays down, and a power return leaves HA as it was.
"""

from hgs.flows import plan
from hgs.flows.ports import HALTED, RUNNING, SUSPENDED, Kind
from hgs.flows.snapshot import State, VmRecord
from hgs.ups import UpsState

MAIN = "main"
POWER_BACK = "power_back"
START_TICK_S = 0.5


def running_for_main(vms):
    """Given the snapshot's VmRecords, returns those the main shutdown takes (not shed already)."""
    return [vm for vm in vms if not vm.shed]


class ShedWait:
    """Runs the wait for one outage flow (``flow``: an OutageFlow after its snapshot)."""

    def __init__(self, flow):
        self.flow = flow
        self.d = flow.d
        self.log = flow.log
        self.shed = []  # the VM dicts hgs shed, in order
        self._lost_said = False

    # -- what is due -----------------------------------------------------------------------

    def pending_rules(self):
        """Returns [(ShedRule, [VmRecord])] for the running VMs that are to be shed, in config order."""
        policy = self.d.settings.vms
        found = {}
        for vm in self.flow.running_now.values():
            rule = policy.shed_rule({"uuid": vm.uuid, "name": vm.name})
            if rule is not None and not vm.shed:
                found.setdefault(rule, []).append(vm)
        return [(rule, sorted(found[rule], key=lambda v: v.name)) for rule in policy.shed if rule in found]

    @staticmethod
    def due(rule, status):
        """True when ``rule``'s moment has come for the reading ``status`` (None: unreadable)."""
        if rule.at == "confirmed":
            return True
        if status is None:
            return False
        kind, value = rule.at
        reading = status.charge_pct if kind == "charge_pct" else status.runtime_s
        return reading is not None and reading <= value

    def trigger_s(self, planned=False):
        """Returns the runtime left at which the main shutdown starts: the worst case of what
        it still has to shut down (deadlines as configured), plus UPS['runtime_reserve_s'].
        ``planned``: as the plan sees it, every VM to be shed already shed."""
        flow = self.flow
        vms = running_for_main(flow.running_now.values())
        if planned:
            vms = [vm for vm in vms if vm.action != "shed"]
        groups = plan.build_groups(vms, self.d.settings.vms)
        worst = plan.budget(flow.timings, len(groups), len(flow.host_stages()), None, 0.0).worst_case_s
        return worst + self.d.settings.ups.runtime_reserve_s

    def emergency(self, status):
        """Returns why nothing may wait (low battery, forced shutdown, `hgs doshutdown`), or None."""
        if self.flow.escalated():
            return "this box is shutting down ('hgs doshutdown')"
        if status is not None and status.state in (UpsState.LOW_BATTERY, UpsState.FORCED_SHUTDOWN):
            return f"the UPS reports {status.state.value}"
        return None

    def main_due(self, status):
        """Returns why the main shutdown starts now, or None to go on waiting."""
        ups = self.d.settings.ups
        if self.flow.timings.main_trigger == "window":
            return "the confirmation window passed (TIMINGS['main_trigger'] = 'window')"
        if self.flow.escalated():
            return "this box is shutting down ('hgs doshutdown')"
        if status is None or not (status.on_battery or status.on_mains):
            if ups.lost_contact == "outage":
                return "the UPS cannot be read and UPS['lost_contact'] is 'outage'"
            if not self._lost_said:
                self._lost_said = True
                self.log.warning("the UPS cannot be read while waiting for the runtime trigger; UPS['lost_contact'] "
                                 "is 'not_an_outage': waiting on (the shed VMs stay down; 'hgs doshutdown' still "
                                 "starts the main shutdown at once)")
                self.flow.report.fact("UPS contact lost while waiting for the runtime trigger: waited on "
                                      "(UPS['lost_contact'] = 'not_an_outage')")
            return None
        self._lost_said = False
        if status.state in (UpsState.LOW_BATTERY, UpsState.FORCED_SHUTDOWN):
            return f"the UPS reports {status.state.value}"
        if status.runtime_s is None:
            return "the UPS reports no runtime left: the runtime trigger cannot wait"
        trigger = self.trigger_s()
        if status.runtime_s <= trigger:
            return (f"runtime left {status.runtime_s:.0f} s reached the worst case plus reserve "
                    f"({trigger:.0f} s; TIMINGS['main_trigger'] = 'runtime')")
        return None

    # -- the wait ----------------------------------------------------------------------------

    def _read(self):
        try:
            return self.d.read_ups()
        except Exception as err:  # an unreadable UPS is a lost contact; UPS['lost_contact'] says what it means
            self.flow.fault("waiting for the main shutdown: reading the UPS", err, recovered=True)
            return None

    def run(self, state):
        """Sheds what is due until the main shutdown is due; returns MAIN, or POWER_BACK once
        the power came back before it (the shed VMs then started again)."""
        flow, clock = self.flow, self.d.clock
        if not self.pending_rules() and flow.timings.main_trigger == "window":
            return MAIN
        outage_since = flow.outage_since or clock.wall()
        began = clock.now()
        if flow.timings.main_trigger == "runtime":
            self.log.info("waiting for the runtime trigger: the main shutdown starts when the runtime left falls "
                          "to %.0f s (worst case plus reserve)", self.trigger_s())
        while True:
            status = self._read()
            back, outage_since = flow.power_back(status, outage_since)
            if back:
                self.log.info("the power is back after %.0f s, before the main shutdown", clock.now() - began)
                self.start_again()
                return POWER_BACK
            hurry = self.emergency(status)
            if hurry is not None:  # no time to shed first: what is still to shed joins the main shutdown
                flow.report.fact(f"main shutdown at once: {hurry}")
                self.log.warning("the main shutdown starts at once: %s", hurry)
                return MAIN
            due = [(rule, vms) for rule, vms in self.pending_rules() if self.due(rule, status)]
            for rule, vms in due:
                self.shed_now(rule, vms, state)
            if due:
                continue  # shedding took time: read the UPS again before anything else
            why = self.main_due(status)
            if why is not None:
                if clock.now() - began > 0:
                    flow.report.fact(f"main shutdown after {clock.now() - began:.0f} s of shedding: {why}")
                self.log.info("the main shutdown starts: %s", why)
                if clock.now() - began > self.d.settings.ups.poll_interval_s:
                    flow.phase("listing the VMs again after the wait", self.refresh, state)
                return MAIN
            clock.sleep(self.d.settings.ups.poll_interval_s)

    def shed_now(self, rule, vms, state):
        """Shuts ``vms`` down (clean, then force, with the configured deadlines), recording each
        as shed in the snapshot first, so a restore after a full outage starts it too."""
        flow = self.flow
        from hgs.flows.outage import names

        self.log.info("shedding %d VM(s) %s: %s", len(vms), rule.describe(), names(v.name for v in vms))
        flow.report.fact(f"shed {len(vms)} VM(s) {rule.describe()}: {names(v.name for v in vms)}")
        kept = state.snapshot.vms if state.snapshot is not None else {}
        for vm in vms:
            vm.shed = True
            if vm.uuid in kept:  # an earlier outage's record of it, if it is the one kept
                kept[vm.uuid].shed = True
        flow.save(state, "the snapshot")
        self.shed += vms
        b = plan.budget(flow.timings, 1, 0, None, 0.0)
        flow.phase(f"shedding {names(v.name for v in vms)}", flow._group, vms, b)

    def refresh(self, state):
        """After a long wait: VMs started since the snapshot are added to it (the main shutdown
        takes them too); VMs no longer running are left out of the main shutdown."""
        policy = self.d.settings.vms
        flow = self.flow
        for pool_uuid in flow.pools:
            running = flow._read(f"listing the running VMs of pool {pool_uuid[:8]} again", pool_uuid,
                                 lambda hv: hv.vms(running_only=True), attempts=1)
            if running is None:
                continue
            now_running = {vm.uuid for vm in running}
            for vm_uuid, vm in list(flow.running_now.items()):
                if vm.pool == pool_uuid and not vm.shed and vm_uuid not in now_running:
                    self.log.info("%s stopped during the wait: left out of the main shutdown", vm.name)
                    del flow.running_now[vm_uuid]
            for vm in running:
                if vm.uuid in flow.running_now or vm.uuid in policy.leave_alone or vm.name in policy.leave_alone:
                    continue
                record = VmRecord.running(vm, pool_uuid, policy.action({"uuid": vm.uuid, "name": vm.name}))
                self.log.info("%s started during the wait: added to the snapshot", vm.name)
                flow.running_now[vm.uuid] = record
                if state.snapshot is not None:
                    state.snapshot.vms.setdefault(vm.uuid, record)
        flow.save(state, "the snapshot")

    # -- the power is back --------------------------------------------------------------------

    def start_again(self):
        """Starts the VMs hgs shed (only those, and only the ones still down), then clears the
        state: nothing else was touched."""
        flow, clock = self.flow, self.d.clock
        flow.report.event("power_back", f"power back before the main shutdown: {len(self.shed)} shed VM(s) "
                          "to start again")
        by_pool = {}
        for vm in self.shed:
            by_pool.setdefault(vm.pool, []).append(vm)
        for pool_uuid, vms in by_pool.items():
            hv = self.d.hypervisors[flow.pools[pool_uuid].executor]
            states = flow._read("reading the shed VMs' power states", pool_uuid, lambda h: h.power_states()) or {}
            starts, resumes, start = [], [], clock.now()
            for vm in vms:
                power = states.get(vm.uuid, HALTED if not states else None)
                if power == HALTED:
                    starts.append(vm.uuid)
                elif power == SUSPENDED:
                    resumes.append(vm.uuid)
                elif power == RUNNING:
                    flow.report.vm(vm.name, "already running", 0.0, "shed, running again before hgs started it")
                else:
                    flow.report.vm(vm.name, "no longer exists", None, "shed, not started")
            if starts or resumes:
                self._start(hv, vms, starts + resumes, resumes, start)
        earlier = flow.earlier_state
        if earlier is not None:
            # an earlier outage's snapshot still waits for its restore: it is kept as it was
            flow.save(earlier, "the earlier outage's snapshot, kept for its restore")
        else:
            flow.save(State(), "the cleared state")

    def _start(self, hv, vms, uuids, resumes, start):
        flow, clock = self.flow, self.d.clock
        named = {vm.uuid: vm.name for vm in vms}
        try:
            batch = hv.start_vms(uuids, resume=resumes)
        except Exception as err:
            for vm_uuid in uuids:
                flow.report.vm(named[vm_uuid], "NOT STARTED AGAIN", None, f"shed: {err}", failed=True)
            return
        deadline = start + flow.timings.vm_start_timeout_s
        waiting = set(uuids)
        while waiting and clock.now() < deadline and not batch.lost:
            for outcome in batch.poll():
                waiting.discard(outcome.uuid)
                name, took = named[outcome.uuid], clock.now() - start
                if outcome.kind == Kind.DONE:
                    self.log.info("%s: started again (it was shed) in %.1f s", name, took)
                    flow.report.vm(name, "started again", took, "shed during the outage")
                elif outcome.kind == Kind.ALREADY and outcome.state == RUNNING:
                    flow.report.vm(name, "already running", took)
                else:
                    self.log.error("%s: not started again: %s", name, outcome.message)
                    flow.report.vm(name, "NOT STARTED AGAIN", took, outcome.message, failed=True)
            if waiting:
                clock.sleep(START_TICK_S)
        for vm_uuid in sorted(waiting):
            flow.report.vm(named[vm_uuid], "NOT CONFIRMED", clock.now() - start, "shed; start not confirmed",
                           failed=True)
        try:
            batch.close()
        except Exception:  # closing a dead channel: nothing left to do
            pass
