"""Load shedding and the runtime trigger (manual clock, fake pool, a battery drained by load).

The site: two hosts (150 W each), three VMs that matter (100 W each) and two heavy build VMs
(400 W each) marked VMS['shed'] at confirmation; TIMINGS['main_trigger'] = 'runtime'. The main
shutdown's worst case is 2 groups x (20 + 10 s) + 2 host stages x 30 s = 120 s; with the
120 s reserve, it starts when the UPS's runtime left falls to 240 s."""

import json
import os

import pytest

from flowfakes import FakeBattery, run_outage, run_restore

SCENARIO = {
    "hosts": ["master", "member1"],
    "vms": [  # name, host, order, tools, clean_s, force_fails
        ("db", "member1", 1, True, 4.0, False),
        ("web", "member1", 0, True, 2.0, False),
        ("dc", "master", 0, True, 3.0, False),
        ("build", "master", 0, True, 3.0, False),
        ("ci", "member1", 0, True, 5.0, False),
    ],
    "ha": True,
}
HEAVY = {"build": {"watts": 400.0}, "ci": {"watts": 400.0}}
TRIGGER_S = 240


def shed_site(make, ups_script, trigger="runtime", shed=None, battery_wh=700.0, **kwargs):
    vms = {"shed": shed if shed is not None else {"vms": ["build", "ci"], "at": "confirmed"}}
    return make(scenario=SCENARIO, ups_script=ups_script, vm_extra=HEAVY, battery=FakeBattery(battery_wh),
                vms_config=vms, timings={"main_trigger": trigger}, **kwargs)


def first_call(site, call):
    return min(t for t, _, c, _, _ in site.log_calls if c == call)


def test_a_short_outage_sheds_only_the_shed_vms_and_starts_them_again_when_the_power_returns(site):
    s = shed_site(site, [(0.0, "ONBATT"), (600.0, "ONLINE")])
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    assert report.result == "power back before the main shutdown: the shed VMs were started again"
    shut = {names for _, _, call, names, _ in s.log_calls if call.startswith("vm-shutdown")}
    assert shut == {("build", "ci")}  # only the shed VMs went down
    assert {s.vms[u].name: s.vms[u].starts for u in s.vms if s.vms[u].starts} == \
        {"build": [(pytest.approx(600.0, abs=2.0), "vm-start")], "ci": [(pytest.approx(600.0, abs=2.0), "vm-start")]}
    assert s.vm_states() == dict.fromkeys(["db", "web", "dc", "build", "ci"], "running")
    touched = {c for _, _, c, _, _ in s.changes()}
    assert touched == {"vm-shutdown", "vm-start"}  # no HA change, no host touched
    assert s.state_file.read()["phase"] == "idle"
    body = mailer.sent[0][1]
    assert "shed 2 VM(s) as soon as the outage is confirmed: build, ci" in body
    assert "started again" in body


def test_a_long_outage_sheds_then_starts_the_main_shutdown_at_worst_case_plus_reserve_then_restores_all(site):
    s = shed_site(site, [(0.0, "ONBATT")])
    readings = []
    real = s.read_ups

    def read_ups():
        status = real()
        readings.append((s.clock.now(), status.runtime_s))
        return status

    s.read_ups = read_ups
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    assert report.result == "site down"
    shed_at = first_call(s, "vm-shutdown")
    main_at = first_call(s, "pool-ha-disable")
    assert shed_at == pytest.approx(5.0, abs=1.5)  # right after the 5 s confirmation
    runtime_at_main = [r for t, r in readings if t <= main_at][-1]
    assert TRIGGER_S - 5 <= runtime_at_main <= TRIGGER_S  # within one poll of the trigger
    assert main_at > 3000  # shedding 800 W of 1400 W bought the time
    assert s.host_powers() == {"master": "off", "member1": "off"}
    snapshot = s.state_file.read()["snapshot"]
    assert {v["name"]: v.get("shed", False) for v in snapshot["vms"].values()} == \
        {"db": False, "web": False, "dc": False, "build": True, "ci": True}
    assert {v["name"]: v["action"] for v in snapshot["vms"].values()}["ci"] == "shed"
    restore, rreport = run_restore(s)
    assert rreport.result == "site restored", rreport.summary()
    assert s.vm_states() == dict.fromkeys(["db", "web", "dc", "build", "ci"], "running")


def test_without_shedding_the_main_shutdown_starts_much_earlier(site):
    s = shed_site(site, [(0.0, "ONBATT")], shed=[])
    flow, report, mailer, code = run_outage(s)
    assert code == 0 and report.result == "site down"
    assert first_call(s, "pool-ha-disable") < 2000  # 1400 W drain the same battery far sooner


def test_window_trigger_sheds_first_then_shuts_the_rest_down_at_once(site):
    s = shed_site(site, [(0.0, "ONBATT")], trigger="window")
    flow, report, mailer, code = run_outage(s)
    assert report.result == "site down", report.summary()
    shutdowns = [(t, names) for t, _, call, names, _ in s.log_calls if call == "vm-shutdown"]
    assert shutdowns[0][1] == ("build", "ci") and shutdowns[0][0] == pytest.approx(5.0, abs=1.5)
    assert first_call(s, "pool-ha-disable") < 20  # the main shutdown follows the shed at once


def test_a_charge_threshold_sheds_when_the_battery_falls_to_it(site):
    s = shed_site(site, [(0.0, "ONBATT"), (1500.0, "ONLINE")], shed={"vms": ["ci"], "at": {"charge_pct": 70}})
    readings = []
    real = s.read_ups

    def read_ups():
        status = real()
        readings.append((s.clock.now(), status.charge_pct))
        return status

    s.read_ups = read_ups
    flow, report, mailer, code = run_outage(s)
    shed_at = first_call(s, "vm-shutdown")
    charge = [c for t, c in readings if t <= shed_at][-1]
    assert 69 <= charge <= 70
    assert [n for _, _, c, n, _ in s.log_calls if c == "vm-shutdown"] == [("ci",)]
    assert report.result.startswith("power back before the main shutdown")
    assert s.vm_states()["ci"] == "running"


@pytest.mark.parametrize("lost_contact, main_starts", [("outage", True), ("not_an_outage", False)])
def test_a_lost_ups_reading_during_the_wait_follows_lost_contact(site, lost_contact, main_starts):
    s = shed_site(site, [(0.0, "ONBATT"), (100.0, "COMMLOST"), (400.0, "ONLINE")],
                  ups_extra=f", 'lost_contact': {lost_contact!r}")
    flow, report, mailer, code = run_outage(s)
    main = [t for t, _, c, _, _ in s.log_calls if c == "pool-ha-disable"]
    if main_starts:
        assert main and 100 <= main[0] <= 103
        assert report.result == "site down"
    else:
        assert not main
        assert report.result.startswith("power back before the main shutdown")
        assert "UPS contact lost while waiting for the runtime trigger" in report.summary()


def test_the_power_failing_again_after_a_short_return_keeps_the_wait_going(site):
    # a hook heard offbattery then onbattery again within one poll: the outage goes on
    events = [(1_800_000_000.0 + 300.0, "offbattery"), (1_800_000_000.0 + 300.5, "onbattery")]
    s = shed_site(site, [(0.0, "ONBATT"), (900.0, "ONLINE")])
    flow, report, mailer, code = run_outage(s, events=events)
    assert [n for _, _, c, n, _ in s.log_calls if c == "vm-start"] == [("build", "ci")]
    assert min(t for t, _, c, _, _ in s.log_calls if c == "vm-start") >= 900


def test_the_dry_run_plan_says_when_each_stage_would_start_at_the_present_load(site):
    s = shed_site(site, [(0.0, "ONBATT")], shed=[{"vms": ["build"], "at": "confirmed"},
                                                 {"vms": ["ci"], "at": {"runtime_s": 900}}])
    flow, report, mailer, code = run_outage(s, confirm=False)  # as 'hgs onbattery --dry-run' runs it
    lines = "\n".join(flow.plan_lines)
    assert "UPS runtime 1800 s, charge 100 %" in lines
    assert "+     5 s  shed build (as soon as the outage is confirmed)" in lines
    assert "~+  900 s  shed ci (at 900 s of runtime left)" in lines
    assert "~+ 1560 s  main shutdown, when runtime left falls to 240 s" in lines


def test_the_power_returning_while_the_shed_vms_go_down_starts_them_again_once_down(site):
    s = shed_site(site, [(0.0, "ONBATT"), (7.0, "ONLINE")])  # ci takes 5 s to shut down from 5 s
    flow, report, mailer, code = run_outage(s)
    assert code == 0 and report.result.startswith("power back before the main shutdown")
    starts = {n: t for t, _, c, n, _ in s.log_calls if c == "vm-start"}
    assert list(starts) == [("build", "ci")] and starts[("build", "ci")] >= 10.0  # after ci halted
    assert s.vm_states() == dict.fromkeys(["db", "web", "dc", "build", "ci"], "running")
    assert {c for _, _, c, _, _ in s.changes()} == {"vm-shutdown", "vm-start"}


def test_doshutdown_during_the_wait_starts_the_main_shutdown_at_once(site):
    s = shed_site(site, [(0.0, "ONBATT")])
    flow, report, mailer, code = run_outage(s, escalated=lambda: s.clock.now() >= 50.0)
    assert 50.0 <= first_call(s, "pool-ha-disable") <= 52.0
    assert "this box is shutting down ('hgs doshutdown')" in report.summary()
    assert s.host_powers() == {"master": "off", "member1": "off"}


def test_a_power_return_during_shedding_keeps_an_earlier_outages_snapshot_for_its_restore(site):
    from hgs.box.state import SITE_DOWN, VERSION

    s = shed_site(site, [(0.0, "ONBATT"), (600.0, "ONLINE")])
    earlier_vm = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    earlier = {"version": VERSION, "phase": SITE_DOWN, "updated": None, "restore_pending": [earlier_vm],
               "snapshot": {"taken": "2026-12-01T00:00:00+0000", "pools": {}, "hosts": {},
                            "vms": {earlier_vm: {"uuid": earlier_vm, "name": "old-app", "order": 0}}}}
    os.makedirs(s.tmp / "state", exist_ok=True)
    (s.tmp / "state" / "state.json").write_text(json.dumps(earlier))  # where the flow's state file is
    flow, report, mailer, code = run_outage(s)
    assert report.result == "power back before the main shutdown: the shed VMs were started again", report.summary()
    after = s.state_file.read()
    assert after["phase"] == SITE_DOWN and after["restore_pending"] == [earlier_vm]
    assert after["snapshot"]["vms"][earlier_vm]["name"] == "old-app"


def test_at_low_battery_nothing_is_shed_first_the_main_shutdown_takes_every_vm_at_once(site):
    s = shed_site(site, [(0.0, "LOWBATT")], shed={"vms": ["build", "ci"], "at": {"charge_pct": 10}})
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    first = {names: t for t, _, call, names, _ in s.log_calls if call.startswith("vm-shutdown")}
    assert first[("db",)] < 1.0, first  # the main shutdown's first group went out at once
    assert ("build", "ci", "dc", "web") in first, first  # the VMs still to shed went with the main groups
    assert "main shutdown at once: the UPS reports" in report.summary()
    assert s.vm_states() == dict.fromkeys(["db", "web", "dc", "build", "ci"], "halted")
