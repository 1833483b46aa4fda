"""The outage flow driven against a fake 3-host HA pool in virtual time (no root, no sshd)."""

from flowfakes import run_outage


def first(site, call, target):
    return min(t for t, _, c, args, result in site.log_calls if c == call and args and args[0] == target
               and result == "ok")


def test_outage_pool_ha_off_every_vm_down_members_before_master(site):
    s = site()
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    assert set(s.vm_states().values()) == {"halted"}
    assert not any(vm.killed_by_host for vm in s.vms.values())  # every VM went down before its host
    assert s.host_powers() == {"master": "off", "member1": "off", "member2": "off"}
    assert s.ha_enabled is False
    changes = [c for c in s.changes() if c[4] == "ok"]
    assert changes[0][2] == "pool-ha-disable"
    master_down = first(s, "host-shutdown", "master")
    assert first(s, "host-shutdown", "member1") < master_down and first(s, "host-shutdown", "member2") < master_down
    last_vm = max(t for t, _, c, _, _ in s.log_calls if c.startswith("vm-shutdown") or c == "vm-reset-powerstate")
    assert last_vm < first(s, "host-disable", "member1")
    # the 'last' VM goes down after every other one has halted
    storage = [args for _, _, c, args, _ in s.log_calls if c.startswith("vm-shutdown") and "storage" in args]
    assert storage and all(len(a) == 1 for a in storage)
    state = s.state_file.read()
    assert state["phase"] == "site_down"
    pool = state["snapshot"]["pools"][s.pool_uuid]
    assert pool["ha_was_enabled"] is True and pool["ha_srs"] == [s.ha_sr]
    assert sorted(v["name"] for v in state["snapshot"]["vms"].values()) == sorted(vm.name for vm in s.vms.values())
    outcomes = {item.name: item.outcome for item in report.vms}
    assert outcomes["legacy"] == "forced" and outcomes["stubborn"] == "forced" and outcomes["jammed"] == "reset"
    assert outcomes["db"] == "clean" and outcomes["storage"] == "clean"
    assert [h.outcome for h in report.hosts] == ["shut down, confirmed down"] * 3
    (subject, body), = mailer.sent
    assert "outage site down (ok" in subject and "Hosts:" in body


def test_power_back_during_confirmation_touches_nothing(site):
    s = site(ups_script=[(0.0, "ONBATT"), (2.0, "ONLINE")])
    flow, report, mailer, code = run_outage(s)
    assert code == 0
    assert report.result == "stopped: power back during confirmation"
    assert s.calls("pool-list") and s.changes() == []  # read ahead; not a single change
    assert s.warmed == [s.master]  # a batch readied ahead, never given: nothing ran
    assert set(s.vm_states().values()) == {"running"} and s.ha_enabled


def test_the_reads_run_during_the_confirmation_and_the_first_change_follows_it_at_once(site):
    s = site(call_s=0.1)  # each xe call takes 0.1 s
    flow, report, mailer, code = run_outage(s)
    window_end = s.settings.timings.confirm_outage_s
    reads = [t for t, _, call, _, _ in s.log_calls if call in ("pool-list", "host-list", "pool-param-get")]
    assert reads and max(reads) < window_end  # discovery and the HA read ran inside the window
    first_change = s.changes()[0]
    assert first_change[2] == "pool-ha-disable"
    assert first_change[0] - window_end < 0.3
    after = [call for t, _, call, _, _ in s.log_calls if window_end <= t <= first_change[0]]
    assert after == ["vm-power-states", "pool-ha-disable"]  # one fresh power-state read, then the change
    assert s.warmed == [s.master]  # the pool's first VM batch was readied during the window too


def test_a_vm_started_during_the_confirmation_is_shut_down_too(site):
    s = site()
    late = next(vm for vm in s.vms.values() if vm.name == "web2")
    late.power = "halted"
    flow_deps = s.deps

    def deps(**kwargs):  # web2 starts 3 s into the confirmation window, after the read-ahead listed the VMs
        d = flow_deps(**kwargs)
        read = d.read_ups

        def read_ups():
            if s.clock.now() >= 3.0 and late.power == "halted" and late.halt_at is None:
                late.power = "running"
            return read()

        d.read_ups = read_ups
        return d

    s.deps = deps
    flow, report, mailer, code = run_outage(s)
    assert "web2" in {item.name for item in report.vms}
    assert set(s.vm_states().values()) == {"halted"}


def test_escalated_flow_forces_at_once_and_sends_every_host_down(site):
    s = site()
    flow, report, mailer, code = run_outage(s, confirm=False, escalated=lambda: True)
    assert s.host_powers() == {"master": "off", "member1": "off", "member2": "off"}
    assert set(s.vm_states().values()) == {"halted"}
    assert not [c for c in s.log_calls if c[2] == "vm-shutdown"]  # no clean shutdown was even tried


def test_ups_comm_lost_after_an_onbattery_event_with_policy_outage_is_an_outage(site):
    # apcupsd answers COMMLOST (NUT: DATA-STALE) for the whole window: the daemon lost the UPS
    s = site(ups_script=[(0.0, "COMMLOST")], ups_extra=", 'lost_contact': 'outage'")
    flow, report, mailer, code = run_outage(s, events=[(s.clock.wall() - 1, "onbattery")])
    assert "UPS contact lost during confirmation (the daemon reported comm lost" in report.summary()
    assert s.host_powers() == {"master": "off", "member1": "off", "member2": "off"}


def test_ups_comm_lost_with_the_default_policy_touches_nothing(site):
    s = site(ups_script=[(0.0, "COMMLOST")])
    flow, report, mailer, code = run_outage(s, events=[(s.clock.wall() - 1, "onbattery")])
    assert report.result == "stopped: outage not confirmed" and s.changes() == []


def test_the_host_stage_follows_the_groups_last_vm_at_once(site):
    scenario = {"hosts": ["master", "member1"],
                "vms": [("a", "member1", 0, True, 2.0, False), ("b", "member1", 0, True, 7.5, False),
                        ("c", "master", 0, True, 4.0, False)]}
    s = site(scenario=scenario, stop_last=())
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    last_halt = max(vm.halt_at for vm in s.vms.values())
    disables = [t for t, _, call, _, result in s.log_calls if call == "host-disable" and result == "ok"]
    assert disables and 0 <= min(disables) - last_halt < 0.05  # no wait once the group's last outcome is in
