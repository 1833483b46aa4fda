"""A hypervisor that refuses in a way no retry fixes (its tools missing on one host, garbage
where an id belongs) fails that host alone: the restore of the rest goes on (manual clock,
fake pool)."""

import pytest

try:
    from .restore_fakes import FakeHypervisor, Site, run_restore
except ImportError:  # tests/flows is not a package
    from restore_fakes import FakeHypervisor, Site, run_restore

from hgs.errors import BadUuid, XeMissing


@pytest.mark.parametrize("error", [XeMissing("member2: xe cannot be run on the host (exit 127)"),
                                   BadUuid("not a uuid: 'garbage'")], ids=["tools missing", "garbage"])
def test_a_member_whose_hypervisor_cannot_answer_fails_alone(monkeypatch, error):
    hosts = FakeHypervisor.hosts

    def refusing(self):
        if self.name == "member2":
            self.site.step("member2: host-list")
            raise error
        return hosts(self)

    monkeypatch.setattr(FakeHypervisor, "hosts", refusing)
    site = Site()
    flow, report, state_file = run_restore(site, xapi_ready_timeout_s=120)
    outcomes = {h.name: h.outcome for h in report.hosts}
    assert outcomes == {"master": "up", "member1": "up", "member2": "XAPI NOT READY"}, report.summary()
    assert set(site.power.values()) == {"running"}  # every VM started through the master
    assert site.ha  # HA turned back on
    assert report.failed and state_file.data["phase"] == "site_down"  # kept for the next attempt
