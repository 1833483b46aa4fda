"""The order a restore wakes a pool in (manual clock, fake pool: master boot 120 s + xapi 60 s,
members 150/100 s + 40/50 s): Wake-on-LAN before any probe, members woken once the master
answers ping (or as TIMINGS['members_wake'] says), their xapi waits side by side."""

import pytest

from hgs.flows.snapshot import Snapshot

try:
    from .restore_fakes import SR, Site, run_restore
except ImportError:  # tests/flows is not a package
    from restore_fakes import SR, Site, run_restore

TICK_S = 1.0  # how late after its trigger a host may be woken (the flow's poll, plus a call or two)


def first_wol(site, host):
    return min(t for t, name in site.wols if name == host)


def test_wake_on_lan_goes_out_before_any_probe_of_each_host():
    site = Site()
    flow, report, _ = run_restore(site)
    assert report.result == "site restored", report.summary()
    for host in ("master", "member1", "member2"):
        seen = [kind for kind, name in site.sequence if name == host]
        assert seen[0] == "wol", (host, seen[:3])


def test_a_host_already_running_gets_its_harmless_packet_and_no_boot_wait():
    site = Site()
    site.already_up = {"master", "member1", "member2"}
    flow, report, _ = run_restore(site)
    assert report.result == "site restored"
    assert sorted(name for _, name in site.wols) == ["master", "member1", "member2"]
    assert site.clock.t < 150  # no boot waited: the VM starts (20 + 15 + 10 s), the 30 s delay, verify


def test_members_are_woken_when_the_master_answers_ping_by_default():
    site = Site()
    flow, report, _ = run_restore(site)
    master_up = site.boot_s["master"]
    for member in ("member1", "member2"):
        assert master_up <= first_wol(site, member) <= master_up + TICK_S
    assert first_wol(site, "member1") < master_up + site.xapi_s["master"]  # boot overlaps the master's xapi


def test_members_woken_together_with_the_master():
    site = Site()
    flow, report, _ = run_restore(site, members_wake="together")
    assert report.result == "site restored"
    assert [first_wol(site, h) for h in ("master", "member1", "member2")] == [0.0, 0.0, 0.0]


def test_members_woken_after_the_master_xapi_answers():
    site = Site()
    flow, report, _ = run_restore(site, members_wake="after_master_xapi")
    assert report.result == "site restored"
    master_xapi = site.xapi_answered["master"]
    assert master_xapi >= site.boot_s["master"] + site.xapi_s["master"]
    for member in ("member1", "member2"):
        assert master_xapi <= first_wol(site, member) <= master_xapi + TICK_S


def test_a_member_up_before_the_master_xapi_waits_for_it_then_both_members_xapi_in_parallel():
    # members boot fast: up long before the master's xapi answers (xe on a member needs the master)
    site = Site(boot_s={"master": 120.0, "member1": 10.0, "member2": 10.0},
                xapi_s={"master": 60.0, "member1": 30.0, "member2": 30.0})
    flow, report, _ = run_restore(site)
    assert report.result == "site restored", report.summary()
    master_xapi = site.xapi_answered["master"]
    for member in ("member1", "member2"):
        assert site.xapi_answered[member] >= master_xapi
        assert site.xapi_answered[member] <= master_xapi + 2 * TICK_S  # in parallel, not one after the other
    assert "XAPI NOT READY" not in report.summary()


def test_pool_restore_overlaps_member_boots_with_the_master_xapi():
    site = Site()
    flow, report, _ = run_restore(site)
    ready = max(site.xapi_answered.values())
    master_up = site.boot_s["master"]
    # members: woken at the master's ping, then their own boot + xapi; both side by side
    bound = master_up + max(site.boot_s[m] + site.xapi_s[m] for m in ("member1", "member2"))
    sequential = site.boot_s["master"] + site.xapi_s["master"] + max(site.boot_s[m] for m in ("member1", "member2")) \
        + site.xapi_s["member1"] + site.xapi_s["member2"]
    assert ready <= bound + 3 * TICK_S < sequential


def test_vms_start_after_the_hosts_in_their_order_groups():
    site = Site()
    flow, report, _ = run_restore(site)
    starts = [t for t, _, what in site.calls if what == "vm-start batch"]
    assert len(starts) == 3  # order groups 1, 2, 3
    assert starts[0] >= max(site.xapi_answered.values())
    assert starts[1] - starts[0] >= 30  # db's start-delay, after db started (20 s)
    assert site.power and set(site.power.values()) == {"running"}


def test_a_master_that_never_boots_still_wakes_the_members_and_fails_clearly():
    site = Site(boot_s={"master": 10_000.0, "member1": 50.0, "member2": 50.0})
    flow, report, state = run_restore(site, host_boot_timeout_s=200)
    assert "master: DID NOT BOOT" in report.summary()
    assert first_wol(site, "member1") >= 200  # woken when the master's boot wait ended
    assert report.failed and state.data["phase"] == "site_down"
    assert Snapshot.from_dict(state.data["snapshot"]) == Snapshot.from_dict(site.snapshot())


def test_members_wake_setting_is_checked(make_config):
    from hgs.config import load
    from hgs.errors import ConfigError

    good = load(make_config(extra="TIMINGS = {'members_wake': 'together'}\n"))
    assert good.timings.members_wake == "together"
    assert load(make_config(name="default.py")).timings.members_wake == "after_master_ping"
    with pytest.raises(ConfigError) as err:
        load(make_config(extra="TIMINGS = {'members_wake': 'whenever'}\n", name="bad.py"))
    assert "members_wake" in str(err.value) and "'after_master_ping'" in str(err.value)


def test_ha_is_turned_back_on_with_the_recorded_heartbeat_sr():
    site = Site()
    flow, report, _ = run_restore(site)
    assert site.ha == [[SR]]


def test_ha_is_turned_back_on_without_a_heartbeat_sr_when_none_was_learned():
    site = Site()
    flow, report, _ = run_restore(site, snapshot=site.snapshot(ha_srs=()))
    assert report.result == "site restored" and not report.failed, report.summary()
    assert site.ha == [[]]  # pool-ha-enable with no heartbeat-sr-uuids: xapi picks the statefile SR
    assert "pool HA turned back on (statefile SR picked by xapi)" in report.summary()


def test_a_slow_start_in_one_pool_never_holds_up_another_pools_vms():
    site = Site(vms=[("hung", 1, 0, "master", 100.0), ("quick", 1, 0, "member1", 5.0)])  # "hung" is sent first
    snapshot = site.snapshot()
    other = "33333333-0000-0000-0000-000000000000"  # member1 is a standalone host: a pool of its own
    member1 = next(u for u, h in snapshot["hosts"].items() if h["name"] == "member1")
    snapshot["pools"][other] = {"master": member1, "ha_was_enabled": False, "ha_srs": [], "executor": "member1"}
    snapshot["hosts"][member1].update(pool=other, master=True)
    quick = next(u for u, v in snapshot["vms"].items() if v["name"] == "quick")
    snapshot["vms"][quick]["pool"] = other
    flow, report, _ = run_restore(site, snapshot)
    assert report.result == "site restored", report.summary()
    starts = {host: t for t, host, what in site.calls if what == "vm-start batch"}
    assert set(starts) == {"master", "member1"} and abs(starts["member1"] - starts["master"]) < 1.0
    took = {vm.name: vm.seconds for vm in report.vms}
    assert took["quick"] < 10 < 100 <= took["hung"]  # reported when it ran, not after the other pool's start
