"""The simulated battery drained by load (hgs.sim.load): shedding load slows the drain, and the
runtime it reports is the charge left at the present load."""

from hgs.sim.load import LoadedUps


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_runtime_follows_the_load_and_the_charge_drains_by_it():
    clock, load = Clock(), {"w": 1000.0}
    ups = LoadedUps(lambda: load["w"], rated_w=1000.0, full_runtime_s=100.0, clock=clock)
    ups.set_state("onbatt")
    assert ups.snapshot()["runtime_s"] == 100
    clock.t = 20.0
    assert ups.snapshot() | {"on_battery_s": 0} == {"state": "onbatt", "charge_pct": 80.0, "runtime_s": 80,
                                                    "on_battery_s": 0}
    load["w"] = 500.0  # half the load shed
    assert ups.snapshot()["runtime_s"] == 160  # the same charge lasts twice as long
    clock.t = 60.0  # 40 s at 500 W use 20 % of the charge
    snap = ups.snapshot()
    assert snap["charge_pct"] == 60.0 and snap["runtime_s"] == 120


def test_on_line_it_recharges_as_the_plain_simulated_ups():
    clock = Clock()
    ups = LoadedUps(lambda: 2000.0, rated_w=1000.0, full_runtime_s=100.0, recharge_s=100.0, clock=clock,
                    charge_pct=50.0)
    clock.t = 10.0
    assert ups.snapshot()["charge_pct"] == 60.0
