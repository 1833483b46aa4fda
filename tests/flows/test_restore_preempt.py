"""A restore stops within a few seconds when the power fails again or hgs doshutdown comes,
from inside ANY wait, with the snapshot kept for the outage flow (manual clock, fake pool).

The sweep injects each stop kind (UPS reading on battery, an onbattery event, doshutdown)
at every step of a 3-host pool restore (each xe call, each Wake-on-LAN packet) and at the
start and middle of every wait between two steps. Its figures go to docs/reliability-restore.md
when run with HGS_WRITE_FIGURES=1."""

import os
import time
from pathlib import Path

from hgs.flows.snapshot import Snapshot

try:
    from .restore_fakes import Site, run_restore
except ImportError:  # tests/flows is not a package
    from restore_fakes import Site, run_restore

STOP_BOUND_S = 3.0  # from the fault to the restore's return, on the flow's clock
KINDS = ("ups", "event", "doshutdown")
FIGURES = Path(__file__).resolve().parents[2] / "docs" / "reliability-restore.md"


# The sweep's pool boots in a fifth of the default times (every wait still has a start and a
# middle to stop in, with several polls each): the same steps, far fewer polls to step through.
SWEEP = {"boot_s": {"master": 24.0, "member1": 30.0, "member2": 20.0},
         "xapi_s": {"master": 12.0, "member1": 8.0, "member2": 10.0},
         "vms": [("db", 1, 6, "master", 4.0), ("app1", 2, 0, "member1", 3.0),
                 ("app2", 2, 0, "member2", 3.0), ("web", 3, 0, "master", 2.0)]}


def clean_run(**site):
    site = Site(**site)
    flow, report, state = run_restore(site)
    assert report.result == "site restored" and not report.failed, report.summary()
    return site


def injection_points(log):
    """Returns the step numbers to inject at: every step that is not a sleep, and the first and
    middle sleep of each wait (a run of sleeps between two steps)."""
    points, wait = [], []
    for number, (_, what) in enumerate(log, start=1):
        if what == "sleep":
            wait.append(number)
            continue
        if wait:
            points += sorted({wait[0], wait[len(wait) // 2]})
            wait = []
        points.append(number)
    return points


def test_a_clean_restore_of_the_fake_pool_brings_everything_back():
    site = clean_run()
    assert set(site.power.values()) == {"running"}
    assert all(site.enabled.values())
    assert site.ha == [["22222222-0000-0000-0000-000000000000"]]


def test_power_failure_at_every_step_and_wait_stops_the_restore_in_bound_with_the_snapshot_kept():
    points = injection_points(clean_run(**SWEEP).log)
    runs, in_bound, completed, slowest, worst = 0, 0, 0, 0.0, None
    started = time.monotonic()
    for kind in KINDS:
        for step in points:
            site = Site(**SWEEP)
            snapshot = site.snapshot()
            site.inject(kind, step=step)
            flow, report, state = run_restore(site, snapshot=snapshot)
            runs += 1
            assert site.injected_at is not None, (kind, step)
            took = site.clock.t - site.injected_at
            if report.result == "site restored":  # the fault came after the last wait: nothing left to stop
                assert state.data["phase"] == "idle" and set(site.power.values()) == {"running"}
                completed += 1
                continue
            assert report.result == "stopped: power failed again", (kind, step, report.summary())
            assert not report.failed
            assert state.data["phase"] == "site_down", (kind, step)
            assert Snapshot.from_dict(state.data["snapshot"]) == Snapshot.from_dict(snapshot), (kind, step)
            if took > slowest:
                slowest, worst = took, (kind, step, site.log[step - 1][1])
            in_bound += took <= STOP_BOUND_S
    elapsed = time.monotonic() - started
    assert in_bound == runs - completed, f"slowest stop {slowest:.2f} s at {worst}"
    assert completed <= len(KINDS) * 3  # only the very last steps (verify, clearing the state) may finish
    if os.environ.get("HGS_WRITE_FIGURES"):
        write_figures(len(points), runs, in_bound, completed, slowest, worst, elapsed)


def test_a_hung_xe_call_is_cut_when_the_power_fails():
    site = Site(hang={("member1", "host-list"): 250.0})  # xapi on member1 hangs its first answer
    site.inject("ups", at=200.0)
    flow, report, state = run_restore(site)
    assert report.result == "stopped: power failed again"
    assert site.clock.t - site.injected_at <= STOP_BOUND_S


def test_doshutdown_stops_a_restore_during_the_boot_wait():
    site = Site()
    site.inject("doshutdown", at=60.0)  # the master is still booting (120 s)
    flow, report, state = run_restore(site)
    assert report.result == "stopped: power failed again"
    assert site.clock.t - site.injected_at <= STOP_BOUND_S
    assert "hgs doshutdown" in report.summary()
    assert set(site.power.values()) == {"halted"}


def test_start_delay_read_from_xe_is_capped_at_600_s(caplog):
    site = Site(vms=[("db", 1, 86400, "master", 5.0), ("app", 2, 0, "master", 5.0)])
    flow, report, state = run_restore(site)
    assert report.result == "site restored"
    starts = [t for t, _, what in site.calls if what == "vm-start batch"]
    assert 600 <= starts[1] - starts[0] <= 600 + 30
    assert "start-delay 86400 s (from xe) is capped at 600 s" in caplog.text


def write_figures(points, runs, in_bound, completed, slowest, worst, elapsed):
    kind, step, what = worst
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(f"""## Restore pre-emption sweep

A power failure injected into a 3-host pool restore (master boot 24 s + xapi 12 s, members
30/20 s + 8/10 s, 4 VMs in 3 order groups, a 6 s start-delay, HA on), on a manual clock
with fake hosts (`tests/flows/test_restore_preempt.py`, figures written by
`HGS_WRITE_FIGURES=1 .venv/bin/python -m pytest -q tests/flows/test_restore_preempt.py`).
Each of {len(KINDS)} stop kinds (the UPS reading on battery, an onbattery event, `hgs doshutdown`)
is injected at each of {points} points: every step (each xe call, each Wake-on-LAN packet) and the
start and middle of every wait between two steps.

| figure | value |
|---|---|
| injection points (steps and waits) | {points} |
| runs | {runs} |
| runs stopped within {STOP_BOUND_S:g} s, snapshot intact, state `site_down` | {in_bound} |
| runs that had already finished the restore (fault after the last wait) | {completed} |
| slowest stop (fault to return, flow clock) | {slowest:.2f} s ({kind} at step {step}: {what}) |
| sweep wall time | {elapsed:.1f} s |
""")
