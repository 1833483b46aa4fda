"""hgs doshutdown's forced flow in virtual time: every host sent down within the bound, the
master right after the members (never waiting for them to go quiet)."""

from flowfakes import accepted, run_outage


def test_the_master_is_sent_down_right_after_the_members_even_when_they_are_slow_to_go_quiet(site):
    s = site(forced=True, off_after_s=120, timings={"host_shutdown_timeout_s": 300})  # members take 2 min to go off
    flow, report, mailer, code = run_outage(s, confirm=False, escalated=lambda: True)
    sent = accepted(s, "host-shutdown")
    assert set(sent) == {"master", "member1", "member2"}, report.summary()
    order = [args[0] for _, _, c, args, result in s.log_calls if c == "host-shutdown" and result == "ok"]
    assert order.index("master") > max(order.index("member1"), order.index("member2"))  # members first
    assert sent["master"] - max(sent["member1"], sent["member2"]) < 1.0  # ... and the master right after
    assert sent["master"] < 0.85 * s.settings.timings.doshutdown_bound_s


def test_the_forced_flow_sends_every_host_down_within_its_bound(site):
    s = site(forced=True)
    flow, report, mailer, code = run_outage(s, confirm=False, escalated=lambda: True)
    sent = accepted(s, "host-shutdown")
    bound_s = s.settings.timings.doshutdown_bound_s
    assert max(sent.values()) < 0.85 * bound_s, sent
    assert s.host_powers() == {"master": "off", "member1": "off", "member2": "off"}
    assert set(s.vm_states().values()) == {"halted"}
    assert not any(vm.killed_by_host for vm in s.vms.values())  # every VM forced down before its host
    assert s.ha_enabled is False


def test_escalation_arriving_while_the_members_go_quiet_sends_the_master_at_once(site):
    s = site(off_after_s=120, timings={"host_shutdown_timeout_s": 300})

    def escalated():  # 'hgs doshutdown' comes 5 s after the members' host-shutdowns were sent
        sent = accepted(s, "host-shutdown")
        return "member2" in sent and s.clock.now() >= sent["member2"] + 5

    flow, report, mailer, code = run_outage(s, escalated=escalated)
    sent = accepted(s, "host-shutdown")
    assert 5 <= sent["master"] - sent["member2"] < 6.0, sent


def test_a_dropped_session_under_the_masters_host_shutdown_is_sent_again_within_the_bound(site):
    # the usual resend comes at half the host deadline (150 s here): long after this box has halted
    probe = site(forced=True, timings={"host_shutdown_timeout_s": 300})
    run_outage(probe, confirm=False, escalated=lambda: True)
    at = [p for p, _, call, where in probe.faults.calls if call == "host-shutdown"][-1]  # the master's
    s = site(forced=True, timings={"host_shutdown_timeout_s": 300}, plan={at: "lost"})
    flow, report, mailer, code = run_outage(s, confirm=False, escalated=lambda: True)
    sent = accepted(s, "host-shutdown")
    assert sent["master"] < 0.85 * s.settings.timings.doshutdown_bound_s, sent
    assert "session dropped; sent again: sent" in report.summary()
