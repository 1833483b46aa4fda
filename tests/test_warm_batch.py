"""The calls right after the confirmation start in shells opened during it (warm_up): through a
real OpenSSH server in front of the simulated xe, warmed-up shells run the read, the change and
the batch they are given exactly as fresh channels do, run nothing when never given one, and a
shell that is gone is replaced by a fresh channel."""

import logging
import os
import signal
import threading
import time

import pytest

from hgs import config
from hgs.errors import ChannelRefused, HypervisorError
from hgs.flows.ports import Kind
from hgs.hypervisors.xen.backend import open_hypervisor
from hgs.sim.lab import SimSite

SCENARIO = {"time_scale": 50, "hosts": [{"name": "xen1", "mac": "02:00:00:00:00:01"}],
            "vms": [{"name": f"vm{i}", "shutdown_s": 10} for i in range(3)]}


def open_site(tmp_path, scenario):
    """Returns (site, its host's xe backend over real SSH, close)."""
    site = SimSite(tmp_path / "site", scenario, front_door="openssh")
    try:
        path = tmp_path / "config.py"
        path.write_text(site.config_text("{'daemon': 'apcupsd', 'address': '127.0.0.1:3551'}"))
        path.chmod(0o600)
        host = config.load(path).hosts[0]
        hv, close = open_hypervisor(host, logging.getLogger("test.warm"), 5, 30)
    except BaseException:
        site.stop()
        raise

    def stop():
        close()
        site.stop()
    return site, hv, stop


@pytest.fixture
def site(tmp_path):
    site, hv, stop = open_site(tmp_path, SCENARIO)
    try:
        yield site, hv
    finally:
        stop()


def finish(batch, timeout_s=20):
    outcomes, deadline = [], time.monotonic() + timeout_s
    while batch.pending and time.monotonic() < deadline:
        batch.wait(0.25)
        outcomes += batch.poll()
        assert not batch.lost
    return {o.uuid: o.kind for o in outcomes}


def test_warmed_up_shells_run_the_read_the_change_and_the_batch(site):
    site, hv = site
    hv.warm_up()
    shells = [spare.channel for spare in hv.connection._spares]
    assert len(shells) == 3
    time.sleep(0.3)  # the shells wait for their commands: nothing runs meanwhile
    assert set(site.vm_states().values()) == {"running"} and site.store.read()["pool"]["ha_enabled"] is not None
    states = hv.power_states()  # a read: its output and exit status as from a fresh channel
    uuids = sorted(u for u, power in states.items() if power == "running")
    assert len(uuids) == 3
    hv.disable_host(site.store.read()["pool"]["master"])  # a change
    batch = hv.shutdown_vms(uuids)
    assert batch.stream.channel is shells[2] and not hv.connection._spares  # all three went into the shells
    assert finish(batch) == dict.fromkeys(uuids, Kind.DONE)
    assert set(site.vm_states().values()) == {"halted"}
    assert not site.store.read()["hosts"][site.store.read()["pool"]["master"]]["enabled"]


def test_a_failing_command_in_a_warmed_up_shell_fails_as_it_would_in_a_fresh_channel(site):
    site, hv = site
    missing = "0b1c2d3e-0000-4000-8000-0000000000aa"  # no such host: xapi's error text and exit status
    with pytest.raises(HypervisorError) as cold:
        hv.shutdown_host(missing)
    hv.warm_up()
    with pytest.raises(HypervisorError) as warm:
        hv.shutdown_host(missing)
    assert len(hv.connection._spares) == 2  # the second call went into a warmed-up shell
    assert warm.value.kind == cold.value.kind == Kind.GONE and str(warm.value) == str(cold.value)


def test_shells_that_are_gone_are_replaced_and_the_batch_still_runs(site):
    site, hv = site
    uuids = sorted(vm.uuid for vm in hv.vms(running_only=True))
    hv.warm_up()
    shells = [spare.channel for spare in hv.connection._spares]
    for channel in shells:
        channel.close()  # the host ended the sessions (sshd restarted, a timeout)
    batch = hv.shutdown_vms(uuids, force=True)
    assert batch.stream.channel not in shells
    assert finish(batch) == dict.fromkeys(uuids, Kind.DONE)
    assert set(site.vm_states().values()) == {"halted"}


def test_a_shell_never_given_a_batch_runs_nothing(site, tmp_path):
    site, hv = site
    hv.warm_up()
    hv.connection.close()  # the power came back during the confirmation: the flow ends here
    time.sleep(0.5)
    assert set(site.vm_states().values()) == {"running"}
    assert not [c for c in site.store.calls() if c["argv"] and c["argv"][0] == "vm-shutdown"]


def test_a_large_batch_runs_in_a_few_shells_side_by_side(tmp_path):
    scenario = dict(SCENARIO, vms=[{"name": f"vm{i:03d}", "shutdown_s": 10} for i in range(250)])
    site, hv, stop = open_site(tmp_path, scenario)
    try:
        uuids = sorted(vm.uuid for vm in hv.vms(running_only=True))
        batch = hv.shutdown_vms(uuids, force=True)
        assert len(batch.parts) == 3 and sorted(u for _, part in batch.parts for u in part) == uuids
        assert finish(batch) == dict.fromkeys(uuids, Kind.DONE)  # each VM's outcome once, from its shell
        assert set(site.vm_states().values()) == {"halted"}

    finally:
        stop()


def test_a_channel_the_host_refuses_is_asked_again_and_never_taken_for_a_sent_command(site):
    site, hv = site
    connection = hv.connection
    connection.extra_connections = 0  # no second connection to turn to: the refusal itself is tested
    connection.warm(10)  # the lab's sshd allows 10 sessions per connection (MaxSessions' default)
    spares = list(connection._spares)
    assert len(spares) == 10
    # one session ends half a second later: the command waits for it instead of failing
    threading.Timer(0.5, spares[0].close).start()
    started = time.monotonic()
    stream = connection.start("echo started", timeout_s=5)
    assert 0.4 <= time.monotonic() - started < 4
    stream.close()
    # none ends: the host-shutdown never ran, and hgs does not say it was sent
    host = site.store.read()["pool"]["master"]
    connection.interrupt = None
    with connection._spares_lock:
        connection._spares = []  # keep the 9 open shells out of the way of the calls below
    tenth = connection.start("sleep 30", timeout_s=5)  # the tenth session: none is left
    started = time.monotonic()
    with pytest.raises(ChannelRefused):
        connection.start("echo never", timeout_s=1.0)
    assert time.monotonic() - started < 3
    hv.xe_timeout_s = 1.0
    with pytest.raises(ChannelRefused):  # not 'sent, session dropped': the command never ran
        hv.shutdown_host(host)
    assert not [c for c in site.store.calls() if c["argv"] and c["argv"][0] == "host-shutdown"]
    for spare in spares + [tenth]:
        spare.close()


def test_a_batch_whose_shell_is_killed_is_lost_and_its_vms_stay_pending(tmp_path):
    """The host's shell dies under the batch (killed, out of memory): sshd closes the channel
    with a signal, not an exit status. Its VMs have not reported: the batch is lost, so the
    flow sends them again, instead of waiting for outcomes that never come."""
    from hgs.sim.lab import _process_table, _tree

    scenario = dict(SCENARIO, time_scale=1, vms=[{"name": f"vm{i}", "shutdown_s": 600} for i in range(3)])
    site, hv, stop = open_site(tmp_path, scenario)
    try:
        uuids = sorted(vm.uuid for vm in hv.vms(running_only=True))
        batch = hv.shutdown_vms(uuids)
        door = site.doors["xen1"]
        deadline = time.monotonic() + 10
        while len(site.store.calls()) < 4 and time.monotonic() < deadline:  # vm-list + the 3 shutdowns
            time.sleep(0.05)
        parents, _ = _process_table()
        shells = [p for p in _tree(door.proc.pid, parents)  # the batch's shell (not its forks)
                  if _cmdline(p) == ["sh", "-s"] and _cmdline(parents[p]) != ["sh", "-s"]]
        assert len(shells) == 1
        under = [p for p in _tree(shells[0], parents) if p != shells[0]]
        for pid in [shells[0]] + under:  # the shell and what it started, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while not batch.lost and time.monotonic() < deadline:
            batch.wait(0.25)
            assert batch.poll() == []
        assert batch.lost and batch.pending == set(uuids)
        batch.close()
    finally:
        stop()


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def test_a_host_allowing_one_session_per_connection_gets_more_connections(tmp_path):
    """A hardened sshd (MaxSessions 1): readying shells ahead takes the one session without
    waiting for more, and a read while a batch runs goes through another connection at once,
    instead of waiting for the batch to end."""
    scenario = dict(SCENARIO, time_scale=1, vms=[{"name": f"vm{i}", "shutdown_s": 3} for i in range(3)])
    site, hv, stop = open_site(tmp_path, scenario)
    try:
        door = site.doors["xen1"]
        door.allow_sessions(1)
        started = time.monotonic()
        hv.warm_up()
        assert time.monotonic() - started < 2.5 and len(hv.connection._spares) == 1
        uuids = sorted(u for u, power in hv.power_states().items() if power == "running")  # the spare
        batch = hv.shutdown_vms(uuids)  # the first connection's one session
        started = time.monotonic()
        assert set(hv.power_states()) >= set(uuids)  # a second connection
        assert time.monotonic() - started < 2.5 and batch.pending == set(uuids)
        assert finish(batch) == dict.fromkeys(uuids, Kind.DONE)
        assert door.connections == 2 and hv.connection.connects == 1 and hv.connection.extra_connects == 1
    finally:
        stop()


def test_channels_refused_at_the_same_moment_are_all_refusals_never_a_lost_connection(tmp_path):
    """paramiko keeps one refusal reason per connection: when several threads are refused at
    once, some get a bare "Unable to open channel." Each is still a refusal (the command never
    ran, the connection is fine), not a dropped connection that would send a host-shutdown
    through another route or report it as sent."""
    from hgs.errors import ConnectionLost

    site, hv, stop = open_site(tmp_path, SCENARIO)
    try:
        site.doors["xen1"].allow_sessions(2)
        connection = hv.connection
        connection.extra_connections = 0
        held = [connection.start("sleep 30", timeout_s=5) for _ in range(2)]  # both sessions taken
        answers = []

        def ask():
            try:
                connection.start("echo never", timeout_s=0.5).close()
                answers.append("ran")
            except Exception as err:
                answers.append(err)

        for _ in range(3):
            askers = [threading.Thread(target=ask) for _ in range(8)]
            for asker in askers:
                asker.start()
            for asker in askers:
                asker.join(10)
        assert len(answers) == 24
        assert not [a for a in answers if isinstance(a, ConnectionLost)]
        assert all(isinstance(a, ChannelRefused) for a in answers), {type(a).__name__ for a in answers}
    finally:
        for stream in locals().get("held", ()):
            stream.close()
        stop()
