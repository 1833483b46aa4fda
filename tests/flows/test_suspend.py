"""Suspend instead of shutdown (VMS['suspend']): a suspended VM comes back resumed, not
started; a suspend that fails or does not finish is shut down within the VM's deadline
(clean, then forced) and started by the restore. Manual clock, fake pool."""

import pytest

from flowfakes import run_outage, run_restore

SCENARIO = {
    "hosts": ["master", "member1"],
    "vms": [("db", "member1", 1, True, 4.0, False), ("web", "member1", 0, True, 2.0, False),
            ("dc", "master", 0, True, 3.0, False)],
    "ha": True,
}
GRACE_S, FORCE_S = 20, 10  # flowfakes.TIMINGS


def suspend_site(make, **vm_extra):
    return make(scenario=SCENARIO, vm_extra={"db": vm_extra}, vms_config={"suspend": ["db"]})


def vm_line(report, name):
    return next(item for item in report.vms if item.name == name)


def test_a_suspended_vm_comes_back_resumed_not_started(site):
    s = suspend_site(site)
    flow, report, mailer, code = run_outage(s)
    assert report.result == "site down", report.summary()
    assert vm_line(report, "db").outcome == "suspended"
    assert [c for _, _, c, n, _ in s.log_calls if "db" in n] == ["vm-suspend"]  # never shut down
    assert s.vm_states()["db"] == "suspended" and s.host_powers()["member1"] == "off"
    assert s.state_file.read()["snapshot"]["vms"][s.vms_by_name("db").uuid]["action"] == "suspend"
    restore, rreport = run_restore(s)
    assert rreport.result == "site restored", rreport.summary()
    assert [call for _, call in s.vms_by_name("db").starts] == ["vm-resume"]
    assert [call for _, call in s.vms_by_name("web").starts] == ["vm-start"]
    assert vm_line(rreport, "db").outcome == "resumed"
    assert s.vm_states() == {"db": "running", "web": "running", "dc": "running"}


@pytest.mark.parametrize("code", ["VM_NO_SUSPEND_SR", "VM_LACKS_FEATURE_SUSPEND", "SR_BACKEND_FAILURE_44"])
def test_a_failed_suspend_is_shut_down_within_its_deadline_and_started_by_the_restore(site, code):
    s = suspend_site(site, suspend_error=code)
    flow, report, mailer, code_ = run_outage(s)
    assert report.result == "site down", report.summary()
    db = vm_line(report, "db")
    assert db.outcome == "clean" and db.seconds <= GRACE_S
    assert f"suspend failed: {code}" in db.detail
    assert [c for _, _, c, n, _ in s.log_calls if "db" in n] == ["vm-suspend", "vm-shutdown"]
    restore, rreport = run_restore(s)
    assert rreport.result == "site restored", rreport.summary()
    assert [call for _, call in s.vms_by_name("db").starts] == ["vm-start"]


def test_a_suspend_past_its_deadline_is_forced_then_started_by_the_restore(site):
    s = suspend_site(site, suspend_s=None)  # the suspend never finishes
    flow, report, mailer, code = run_outage(s)
    db = vm_line(report, "db")
    assert db.outcome == "forced" and GRACE_S <= db.seconds <= GRACE_S + FORCE_S
    assert "no suspend within 20 s" in db.detail
    restore, rreport = run_restore(s)
    assert [call for _, call in s.vms_by_name("db").starts] == ["vm-start"]
    assert s.vm_states()["db"] == "running"


def test_the_mail_names_the_suspended_vm(site):
    s = suspend_site(site)
    flow, report, mailer, code = run_outage(s)
    assert "db: suspended" in mailer.sent[0][1]


def test_the_site_restored_notice_counts_the_resumed_vms(site):
    from hgs.net import notify

    s = suspend_site(site)
    run_outage(s)
    restore, rreport = run_restore(s)
    event, summary = notify.outcome(rreport)
    assert event == "site_restored" and summary.startswith("site restored: 3 VM(s) running again"), summary
