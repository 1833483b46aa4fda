"""The protective duty is unconditional: one fault anywhere never keeps a host up.

Each test injects one of the faults of issue 12 into the outage flow of the fake 3-host HA pool
and checks what a user would see: every host sent host-shutdown and down (members before the
master), HA off, the fault named in the report and the mail, and the exit code 1.
"""

import json

import pytest

from flowfakes import run_outage
from hgs.flows.outage import OutageFlow

ALL_OFF = {"master": "off", "member1": "off", "member2": "off"}


def position(site_factory, call, where=None, nth=0, **kwargs):
    """Runs the flow once without faults; returns the position of the nth ``call`` (on ``where``)."""
    probe = site_factory(**kwargs)
    run_outage(probe)
    found = [p for p, group, c, w in probe.faults.calls if c == call and (where is None or w == where)]
    return found[nth]


def host_shutdowns(s):
    """Returns [host name] in the order host-shutdown was accepted."""
    return [args[0] for _, _, call, args, result in s.log_calls if call == "host-shutdown" and result == "ok"]


def assert_protected(s, report, mailer, code, fault_text, recovered=False):
    """Every host down, members before the master, HA off, every VM halted; the fault named in
    the report and the mail; exit 1, or, for a fault a retry overcame, exit 0 with the outcome
    and the mail's subject saying a fault was recovered."""
    assert s.host_powers() == ALL_OFF, report.summary()
    order = host_shutdowns(s)
    assert order.index("master") > max(order.index("member1"), order.index("member2"))
    assert s.ha_enabled is False
    assert set(s.vm_states().values()) == {"halted"}
    assert fault_text in report.summary()
    (subject, body), = mailer.sent
    assert fault_text in body
    if recovered:
        assert code == 0 and "fault(s) recovered" in report.result and "fault(s) recovered" in subject
    else:
        assert code == 1 and report.failed and "FAILED" in subject


@pytest.mark.parametrize("kind", ["hang", "xe", "garbage"])
def test_the_ha_statefile_read_failing_never_keeps_ha_on(site, kind):
    s = site(always={"pool-param-get": kind})  # during the confirmation and after it
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, "in pool-param-get")
    assert "FAULT: reading the HA heartbeat SR (for the restore)" in report.summary()
    pool = s.state_file.read()["snapshot"]["pools"][s.pool_uuid]
    assert pool["ha_was_enabled"] is True and pool["ha_srs"] == [] and "unknown" in pool["ha_srs_unknown"]


def test_a_bad_uuid_from_the_statefile_vdi_never_keeps_ha_on(site):
    s = site(always={"vdi-param-get": "garbage"})
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, "not a uuid")


def test_a_statefile_read_failing_once_is_read_again_after_the_confirmation(site):
    at = position(site, "pool-param-get")  # read ahead during the confirmation window
    s = site(plan={at: "hang"})
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, f"injected hang #{at} in pool-param-get", recovered=True)
    assert s.state_file.read()["snapshot"]["pools"][s.pool_uuid]["ha_srs"] == [s.ha_sr]


def test_a_failed_retry_after_host_not_disabled_does_not_end_the_host_stage(site):
    # host-disable of member1 fails, so host-shutdown says HOST_NOT_DISABLED; the retried
    # host-disable fails too: the other hosts are still shut down, and member1 is retried
    first = position(site, "host-disable", "master")  # the master's xe runs every host's commands
    s = site(plan={first: "xe", first + 2: "xe"})
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, f"injected xe #{first + 2} in host-disable", recovered=True)
    assert "host-shutdown of member1" in report.summary()


@pytest.mark.parametrize("kind", ["garbage", "bug", "lost", "hang"])
def test_one_hosts_error_never_skips_another(site, kind):
    at = position(site, "host-shutdown")  # the first member's
    s = site(plan={at: kind})
    flow, report, mailer, code = run_outage(s)
    assert s.host_powers() == ALL_OFF, report.summary()
    order = host_shutdowns(s)
    assert order.index("master") > max(order.index("member1"), order.index("member2"))
    # a session dropped under host-shutdown counts as sent (the host may be going down): said so
    assert (f"injected {kind} #{at}" if kind in ("garbage", "bug") else "session dropped") in report.summary()


def test_an_exception_starting_the_forced_shutdowns_is_retried(site):
    at = position(site, "vm-shutdown --force")
    s = site(plan={at: "bug"})
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, f"injected bug #{at} in vm-shutdown --force", recovered=True)


class BuggyVmPhase(OutageFlow):
    """An outage flow with a bug in its VM phase (every group raises at once)."""

    def _group(self, group, b):
        raise KeyError("a bug in the VM phase")


def test_a_crash_in_the_vm_phase_is_reported_and_the_hosts_still_go_down(site):
    s = site()
    flow, report, mailer, code = run_outage(s, flow_class=BuggyVmPhase)
    assert s.host_powers() == ALL_OFF
    assert code == 1 and "FAULT: shutting down VM group 1: KeyError: 'a bug in the VM phase'" in report.summary()
    (subject, body), = mailer.sent
    assert "FAILED" in subject and "KeyError" in body and "Traceback" in body  # the traceback is in the log


def test_the_escalation_check_failing_never_stops_the_hosts(site):
    calls = {"n": 0}

    def escalated():
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("the lock dir went away")
        return False

    s = site()
    flow, report, mailer, code = run_outage(s, escalated=escalated)
    assert_protected(s, report, mailer, code, "the lock dir went away", recovered=True)


@pytest.mark.parametrize("text", ["[]", "null", "42", '"text"', '{"version": 1, "phase": "site_down", "snapshot": []}',
                                  '{"version": 1, "phase": "shutting_down", "snapshot": "x"}',
                                  '{"version": 1, "phase": "shutting_down", "snapshot": {"pools": [1], "vms": 3}}',
                                  '{"version": 1, "phase": "shutting_down", "snapshot": {"pools": {"p": 7}}}'])
def test_a_state_file_that_is_not_what_hgs_wrote_never_stops_the_hosts(site, text):
    s = site()
    s.deps()  # creates the state file wrapper
    s.state_file.write_raw(text)
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, "state")
    state = s.state_file.read()
    assert state["phase"] == "site_down" and len(state["snapshot"]["vms"]) == len(s.vms)
    if text in ("[]", "null", "42", '"text"') or '"snapshot": [' in text or '"snapshot": "' in text:
        kept, = (s.tmp / "state").glob("state.json.broken-*")  # what it held is kept for a person to read
        assert kept.read_text() == text


def test_a_malformed_old_snapshot_keeps_what_can_be_kept(site):
    s = site()
    s.deps()
    old_vm = {"uuid": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "name": "old", "pool": s.pool_uuid, "order": 0}
    s.state_file.write_raw(json.dumps({"version": 1, "phase": "shutting_down", "snapshot": {
        "pools": {s.pool_uuid: {"ha_was_enabled": "yes", "ha_srs": 5}}, "hosts": None,
        "vms": {old_vm["uuid"]: old_vm, "junk": 3}}}))
    flow, report, mailer, code = run_outage(s)
    assert s.host_powers() == ALL_OFF
    vms = s.state_file.read()["snapshot"]["vms"]
    assert "old" in {v["name"] for v in vms.values()} and len(vms) == len(s.vms) + 1


def test_the_state_file_failing_on_every_write_never_stops_the_hosts(site):
    probe = site()
    run_outage(probe)
    saves = [p for p, group, call, _ in probe.faults.calls if call == "state-save"]
    s = site(plan={p: "state" for p in saves})
    flow, report, mailer, code = run_outage(s)
    assert_protected(s, report, mailer, code, "state not saved")


def test_an_exception_from_the_ups_reader_never_stops_the_flow(site):
    probe = site()
    run_outage(probe)
    reads = [p for p, group, call, _ in probe.faults.calls if call == "ups-read"]
    s = site(plan={reads[1]: "bug", reads[-1]: "bug", reads[-2]: "bug"})
    flow, report, mailer, code = run_outage(s)
    assert s.host_powers() == ALL_OFF
    assert f"injected bug #{reads[-1]} in ups-read" in report.summary()
    assert f"injected bug #{reads[1]} in ups-read" in report.summary()


def test_a_session_that_drops_on_the_master_under_a_members_shutdown_is_not_taken_for_sent(site):
    # the master's connection drops under member1's host-shutdown before it ran: the master is
    # not the host going down, so member1 is sent down through itself at once, not 60 s later
    at = position(site, "host-shutdown", "master")
    s = site(plan={at: "lost"})
    flow, report, mailer, code = run_outage(s)
    assert s.host_powers() == ALL_OFF, report.summary()
    dropped = next(t for t, where, call, _, result in s.log_calls if call == "host-shutdown" and result == "fault: lost")
    member = next(h for h in s.hosts.values() if h.name != "master" and h.shutdown_calls
                  and h.shutdown_calls[0] - dropped < 5)
    assert member.shutdown_calls[0] - dropped < 5  # sent through itself right away
    assert "not the host going down" in s.log.text()
