"""Confirming a host down: seen within 0.3 s of the moment host_down_confirm_s of silence is
complete, even when a probe of a silent host takes a whole second (ping's timeout)."""

import pytest

from flowfakes import run_outage

CONFIRM_S = 10.0


def lags(s, down_s):
    """Returns {host: seconds between its confirmation and power-off + host_down_confirm_s}.

    A host is confirmed at the end of its last probe, which is silent and ends the run's checks of it."""
    out = {}
    for name, host in s.hosts.items():
        last = max(t for t, n, down in s.prober.checks if n == name)
        out[name] = last + down_s - (host.off_at + CONFIRM_S)
    return out


@pytest.mark.parametrize("up_s,down_s", [(0.0, 0.0), (0.005, 1.0), (0.05, 2.0)])
def test_a_host_that_went_silent_is_confirmed_down_within_0_3_s(site, up_s, down_s):
    s = site(timings={"host_down_confirm_s": CONFIRM_S}, probe_s=(up_s, down_s))
    flow, report, mailer, code = run_outage(s)
    assert [h.outcome for h in report.hosts] == ["shut down, confirmed down"] * 3
    for name, lag in lags(s, down_s).items():
        assert 0.0 <= lag < 0.3, (name, lag)
    for name, host in s.hosts.items():  # never before the whole silence: the first silent probe began after off
        first_silent = min(t for t, n, down in s.prober.checks if n == name and down)
        assert first_silent >= host.off_at


class OneAtATime:
    """A prober that only answers one host at a time (the flow probes in parallel threads)."""

    def __init__(self, fake):
        self.fake = fake

    def is_down(self, target):
        return self.fake.is_down(target)


def test_a_prober_without_a_batch_probe_is_asked_in_parallel(site):
    s = site(timings={"host_down_confirm_s": CONFIRM_S})
    deps = s.deps

    def one_at_a_time(**kwargs):
        d = deps(**kwargs)
        d.prober = OneAtATime(d.prober)
        return d

    s.deps = one_at_a_time
    flow, report, mailer, code = run_outage(s)
    assert [h.outcome for h in report.hosts] == ["shut down, confirmed down"] * 3
    assert all(0.0 <= lag < 0.3 for lag in lags(s, 0.0).values())


def test_a_stages_hosts_are_sent_down_side_by_side_members_before_the_master(site):
    from flowfakes import run_outage

    s = site()
    batches = []
    made = s.deps

    def deps(**kwargs):
        d = made(**kwargs)

        def side_by_side(call, items):
            items = list(items)
            batches.append(sorted(item.info.name for item in items))
            return [call(item) for item in items]

        d.side_by_side = side_by_side
        return d

    s.deps = deps
    flow, report, mailer, code = run_outage(s)
    assert code == 0, report.summary()
    assert batches[:2] == [["member1", "member2"], ["master"]], batches


def test_hosts_are_still_sent_when_no_thread_can_be_started(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from hgs.box.threads import side_by_side

    def no_thread(self, *args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", no_thread)
    assert side_by_side(lambda name: f"{name} sent", ["member1", "member2"]) == ["member1 sent", "member2 sent"]
