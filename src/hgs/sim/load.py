"""A battery drained by the site's load: what shedding a VM buys.

``LoadedUps`` is a ``SimUps`` whose ``full_runtime_s`` is the runtime of a full battery at
``rated_w``: on battery the charge falls in proportion to the load drawn now, and the runtime
it reports is the charge left at the present load (as a real UPS estimates it). ``site_load_w``
gives a simulated site's load: each host that is on, plus each running VM.
"""

from hgs.sim import site as sitemod
from hgs.sim.ups import SimUps

HOST_W = 150.0
VM_W = 100.0


def site_load_w(store, watts=None, host_w=HOST_W, vm_w=VM_W):
    """Returns a function giving the site's load in watts now: ``host_w`` per host that is on
    (booting or shutting down included), and per running VM its ``watts[name]`` or ``vm_w``."""
    watts = watts or {}

    def load():
        state = store.read()
        hosts = sum(host_w for h in state["hosts"].values() if sitemod.host_phase(state, h) != "off")
        vms = sum(watts.get(v["name"], vm_w) for v in state["vms"].values()
                  if not v["control_domain"] and v["power_state"] == "running")
        return hosts + vms

    return load


class LoadedUps(SimUps):
    """A SimUps drained by ``load_w()`` (watts, read at each poll): ``full_runtime_s`` at ``rated_w``."""

    def __init__(self, load_w, rated_w, **kwargs):
        super().__init__(**kwargs)
        self.load_w = load_w
        self.rated_w = float(rated_w)
        self._load = self.rated_w  # the load drawn since the last poll
        self.readings = []  # (simulated seconds, load W, charge %, runtime s) of each poll

    @property
    def on_battery(self):
        return self._state in ("onbatt", "lowbatt")

    def _charge_to(self, now_s):
        if self._state in ("onbatt", "lowbatt"):
            span = max(0.0, now_s - self._since)
            self._charge = max(0.0, self._charge - 100.0 * span / self.full_runtime_s * self._load / self.rated_w)
            self._since = max(self._since, now_s)
            return
        super()._charge_to(now_s)

    def snapshot(self):
        snap = super().snapshot()  # the charge brought up to now at the load of the last interval
        try:
            self._load = max(1.0, float(self.load_w()))
        except (OSError, ValueError):  # the site is being written: the last load stands
            pass
        snap["runtime_s"] = int(self.full_runtime_s * snap["charge_pct"] / 100.0 * self.rated_w / self._load)
        self.readings.append((self.elapsed_s(), self._load, snap["charge_pct"], snap["runtime_s"]))
        return snap
