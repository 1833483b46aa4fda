"""The simulated xe against the documented behaviour of the real CLI (notes/xenserver-xe.md)."""

import threading
import time

import pytest

from hgs.hypervisors.xen import xe as hxe
from hgs.sim.site import SiteStore
from hgs.sim.xe import ERRORS, VM_FIELDS, Xe

SCENARIO = {
    "time_scale": 60,
    "pool": {"name": "lab", "ha_enabled": True},
    "hosts": [{"name": "xen1", "master": True, "mac": "02:00:00:00:00:01", "shutdown_s": 30, "boot_s": 60,
               "xapi_start_s": 60},
              {"name": "xen2", "mac": "02:00:00:00:00:02"}],
    "vms": [{"name": "web", "host": "xen1", "shutdown_s": 60, "start_s": 30, "order": 2},
            {"name": "a,b\\c", "host": "xen1"},
            {"name": "notools", "host": "xen2", "tools": False},
            {"name": "deaf", "host": "xen1", "quirk": "ignores_shutdown"},
            {"name": "stuck", "host": "xen1", "quirk": "force_fails"},
            {"name": "off", "power_state": "halted"}],
}


@pytest.fixture
def store(tmp_path):
    return SiteStore.create(tmp_path / "site.json", SCENARIO)


def xe(store, *argv, host="xen1"):
    return Xe(store, host).run(list(argv))


def uuid_of(store, name):
    code, out, _ = xe(store, "vm-list", f"name-label={name}", "--minimal")
    assert code == 0
    return out.strip()


def test_vm_list_default_format_lists_control_domains_and_guests(store):
    code, out, err = xe(store, "vm-list")
    assert code == 0 and err == ""
    blocks = out.split("\n\n")
    assert blocks[0].splitlines()[0].startswith("uuid ( RO)           : ")
    assert blocks[0].splitlines()[1] == "     name-label ( RW): Control domain on host: xen1"
    assert blocks[0].splitlines()[2] == "    power-state ( RO): running"
    assert out.endswith("\n\n")
    assert sum("Control domain" in b for b in blocks) == 2


def test_vm_list_filters_params_and_minimal_escapes(store):
    code, out, _ = xe(store, "vm-list", "power-state=running", "is-control-domain=false", "params=uuid,name-label",
                      "--minimal")
    values = hxe.parse_minimal(out)
    assert len(values) == 5  # the uuid first, whatever params= says
    assert all(hxe.UUID.match(v) for v in values)
    code, out, _ = xe(store, "vm-list", "uuid=" + uuid_of(store, "off"), "params=name-label", "--minimal")
    assert out == uuid_of(store, "off") + "\n"
    code, out, _ = xe(store, "vm-list", "name-label=nothing", "--minimal")
    assert (code, out) == (0, "\n")


def test_minimal_escapes_commas_and_backslashes_in_values():
    from hgs.sim.xe import format_minimal

    assert format_minimal(["a,b\\c", "d"]) == "a\\,b\\\\c,d\n"
    assert hxe.parse_minimal(format_minimal(["a,b\\c", "d"])) == ["a,b\\c", "d"]


def test_records_round_trip_through_hgs_parser(store):
    code, out, _ = xe(store, "vm-list", "is-control-domain=false", f"params={hxe.VM_PARAMS}")
    records = hxe.parse_records(out)
    by_name = {r["name-label"]: r for r in records}
    assert by_name["web"]["order"] == "2" and by_name["notools"]["PV-drivers-detected"] == "false"
    assert by_name["off"]["resident-on"] == "<not in database>"


def test_every_record_is_formatted_as_xe_formats_one(store):
    from hgs.sim.xe import format_records

    code, out, _ = xe(store, "vm-list", "params=all")
    records = hxe.parse_records(out)
    assert len(records) == 8 and code == 0
    expected = format_records([[(f"{k} ({t:>3})", r[k]) for k, (t, _) in VM_FIELDS.items()] for r in records])
    assert out == expected


def test_vm_param_get_and_unknown_uuid(store):
    assert xe(store, "vm-param-get", "uuid=" + uuid_of(store, "web"), "param-name=power-state")[1] == "running\n"
    code, _, err = xe(store, "vm-param-get", "uuid=00000000-0000-0000-0000-000000000000", "param-name=power-state")
    assert code == 1 and err.startswith(ERRORS["UUID_INVALID"][0]) and "type: VM" in err


def test_vm_shutdown_blocks_for_the_vms_shutdown_time(store):
    start = time.monotonic()
    code, _, err = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "web"))
    took = time.monotonic() - start
    assert code == 0, err
    assert 0.9 <= took < 2.0  # 60 simulated seconds at time scale 60
    assert xe(store, "vm-param-get", "uuid=" + uuid_of(store, "web"), "param-name=power-state")[1] == "halted\n"


def test_errors_print_the_description_then_params_on_stderr_exit_1(store):
    code, out, err = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "off"))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == ERRORS["VM_BAD_POWER_STATE"][0]
    assert lines[1:] == [f"vm: {uuid_of(store, 'off')} (off)", "expected: running", "actual: halted"]
    assert hxe.classify(err).code == "VM_BAD_POWER_STATE" and hxe.classify(err).params["actual"] == "halted"


def test_guest_without_tools_lacks_the_feature_at_once_and_force_works(store):
    start = time.monotonic()
    code, _, err = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "notools"))
    assert code == 1 and time.monotonic() - start < 0.5
    assert hxe.classify(err).code == "VM_LACKS_FEATURE"
    assert xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "notools"), "--force")[0] == 0


def test_guest_that_ignores_the_request_fails_acknowledgment_after_a_minute(store):
    start = time.monotonic()
    code, _, err = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "deaf"))
    assert code == 1 and 0.9 <= time.monotonic() - start < 2.0
    assert hxe.classify(err).code == "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT"


def test_force_that_fails_and_reset_powerstate(store):
    code, _, err = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, "stuck"), "--force")
    assert code == 1 and "internal error" in err
    assert xe(store, "vm-reset-powerstate", "uuid=" + uuid_of(store, "stuck"))[0] == 1  # needs --force
    assert xe(store, "vm-reset-powerstate", "uuid=" + uuid_of(store, "stuck"), "--force")[0] == 0
    assert xe(store, "vm-param-get", "uuid=" + uuid_of(store, "stuck"), "param-name=power-state")[1] == "halted\n"


def test_selectors_need_multiple_for_several_and_fail_for_none(store):
    code, _, err = xe(store, "vm-shutdown", "power-state=running")
    assert code == 1 and "--multiple required" in err
    code, _, err = xe(store, "vm-start", "name-label=nothing")
    assert code == 1 and hxe.classify(err).code == "NO_MATCHING_VMS"


def test_vm_start_boots_and_refuses_a_running_vm(store):
    off = uuid_of(store, "off")
    start = time.monotonic()
    assert xe(store, "vm-start", "uuid=" + off)[0] == 0
    assert 0.2 <= time.monotonic() - start < 1.5  # 20 simulated seconds
    code, _, err = xe(store, "vm-start", "uuid=" + off)
    assert code == 1 and hxe.classify(err).params == {"vm": f"{off} (off)", "expected": "halted", "actual": "running"}


def test_parallel_shutdowns_from_many_processes_stay_consistent(store):
    names = ["web", "a,b\\c"]
    results = {}

    def stop(name):
        results[name] = xe(store, "vm-shutdown", "uuid=" + uuid_of(store, name))

    threads = [threading.Thread(target=stop, args=(n,)) for n in names]
    threads += [threading.Thread(target=lambda: xe(store, "host-disable", "host=xen2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[n][0] == 0 for n in names)
    state = store.read()
    assert {v["name"]: v["power_state"] for v in state["vms"].values() if v["name"] in names} == {
        "web": "halted", "a,b\\c": "halted"}
    assert [h["enabled"] for h in state["hosts"].values() if h["name"] == "xen2"] == [False]


def test_host_shutdown_needs_disable_then_host_goes_away_after_its_delay(store):
    host = [h for h in store.read()["hosts"].values() if h["name"] == "xen2"][0]
    code, _, err = xe(store, "host-shutdown", f"uuid={host['uuid']}")
    assert code == 1 and hxe.classify(err).code == "HOST_NOT_DISABLED" and err.count("\n") == 1
    assert xe(store, "host-disable", f"uuid={host['uuid']}")[0] == 0
    start = time.monotonic()
    assert xe(store, "host-shutdown", f"uuid={host['uuid']}")[0] == 0
    assert time.monotonic() - start < 0.5  # returns at once
    assert xe(store, "vm-list", host="xen2")[0] == 0  # still up for its 30 simulated seconds
    time.sleep(0.6)
    code, _, err = xe(store, "vm-list", host="xen2")
    assert code == 1 and "Connection refused" in err


def test_members_forward_to_the_master_and_fail_when_it_is_down(store):
    assert xe(store, "vm-list", host="xen2")[0] == 0
    store.power_off("xen1")
    code, _, err = xe(store, "vm-list", host="xen2")
    assert code == 1 and hxe.classify(err).code == "CANNOT_CONTACT_HOST"


def test_wake_boots_the_host_and_xapi_says_still_booting_for_a_while(store):
    store.power_off("xen1")
    assert store.wake("02:00:00:00:00:01") == "xen1"
    code, _, err = xe(store, "vm-list")
    assert code == 1 and "Connection refused" in err  # the OS is still booting: 60 simulated s
    time.sleep(1.05)
    code, _, err = xe(store, "vm-list")
    assert code == 1 and hxe.classify(err).code == "HOST_STILL_BOOTING"
    time.sleep(1.05)
    assert xe(store, "vm-list")[0] == 0


def test_ha_enable_disable_and_statefiles(store):
    pool = xe(store, "pool-list", "--minimal")[1].strip()
    assert xe(store, "pool-param-get", f"uuid={pool}", "param-name=ha-enabled")[1] == "true\n"
    vdi = xe(store, "pool-param-get", f"uuid={pool}", "param-name=ha-statefiles")[1].strip()
    sr = xe(store, "vdi-param-get", f"uuid={vdi}", "param-name=sr-uuid")[1].strip()
    assert hxe.UUID.match(sr)
    assert xe(store, "pool-ha-disable")[0] == 0
    assert xe(store, "pool-param-get", f"uuid={pool}", "param-name=ha-enabled")[1] == "false\n"
    assert xe(store, "pool-ha-enable", f"heartbeat-sr-uuids={sr}")[0] == 0
    assert xe(store, "pool-param-get", f"uuid={pool}", "param-name=ha-enabled")[1] == "true\n"


def test_every_call_is_recorded(store):
    xe(store, "vm-list")
    xe(store, "host-disable", "host=xen2", host="xen2")
    calls = store.calls()
    assert [(c["host"], c["argv"][0]) for c in calls] == [("xen1", "vm-list"), ("xen2", "host-disable")]


@pytest.fixture
def served(store):
    """The site of ``store`` held by a simulator server process; yields (server, client)."""
    from hgs.sim.server import SiteClient, SiteServerProcess

    store.close()
    server = SiteServerProcess(store.path)
    try:
        yield server, SiteClient(store.path)
    finally:
        server.stop()


@pytest.mark.parametrize("compiled", [True, False], ids=["c-client", "python-client"])
def test_the_xe_program_speaks_the_same(store, served, tmp_path, compiled):
    import subprocess

    from hgs.sim.xeclient import write_xe_wrapper

    expected = xe(store, "vm-list", "is-control-domain=false", f"params={hxe.VM_PARAMS}")[1]
    wrapper = write_xe_wrapper(str(tmp_path), store.path, "xen1", compiled=compiled)
    if compiled:
        assert open(wrapper, "rb").read(4) == b"\x7fELF", "gcc is on this machine: the C client is used"
    result = subprocess.run([wrapper, "vm-shutdown", "uuid=" + uuid_of(store, "off")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith(ERRORS["VM_BAD_POWER_STATE"][0])
    assert result.stdout == ""
    result = subprocess.run([wrapper, "vm-list", "is-control-domain=false", f"params={hxe.VM_PARAMS}"],
                            capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, expected, "")
    result = subprocess.run([wrapper, "no-such-command"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("Unknown command: no-such-command")
    _, client = served
    assert [c["argv"][0] for c in client.calls()][-3:] == ["vm-shutdown", "vm-list", "no-such-command"]


def test_xe_without_its_simulator_refuses_the_connection(store, tmp_path):
    import subprocess

    from hgs.sim.xeclient import write_xe_wrapper

    wrapper = write_xe_wrapper(str(tmp_path), store.path, "xen1")  # no server runs for this site
    result = subprocess.run([wrapper, "vm-list"], capture_output=True, text=True)
    assert result.returncode == 1 and "Connection refused" in result.stderr


def test_a_client_that_goes_away_cancels_a_hung_call_but_not_a_started_task(store, served, tmp_path):
    import subprocess

    from hgs.sim.xeclient import write_xe_wrapper

    server, client = served
    wrapper = write_xe_wrapper(str(tmp_path), store.path, "xen1")
    web, deaf = uuid_of(store, "web"), uuid_of(store, "a,b\\c")
    # a started task (60 simulated s = 1 s) goes on in the site when its client is killed
    proc = subprocess.Popen([wrapper, "vm-shutdown", f"uuid={web}"])
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    # a call still hanging before it runs (an injected fault) never runs once its client is gone
    client.set_fault("vm-shutdown", 1.0)
    proc = subprocess.Popen([wrapper, "vm-shutdown", f"uuid={deaf}"])
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    time.sleep(1.2)
    states = {v["uuid"]: v["power_state"] for v in client.read()["vms"].values()}
    assert states[web] == "halted" and states[deaf] == "running"


def test_the_server_keeps_the_site_in_its_file(store, served):
    from hgs.sim.site import SiteStore

    server, client = served
    client.power_off("xen2")
    with client.transaction() as state:
        state["pool"]["name"] = "renamed"
    server.stop()
    saved = SiteStore.load(store.path).read()
    assert saved["pool"]["name"] == "renamed"
    assert [h["power"] for h in saved["hosts"].values() if h["name"] == "xen2"] == ["off"]


def test_a_call_costs_little_cpu_with_a_thousand_vms(tmp_path):
    """The simulator must not be what a large-pool benchmark measures."""
    import os
    import subprocess

    from hgs.sim.server import SiteServerProcess
    from hgs.sim.xeclient import write_xe_wrapper

    scenario = {"hosts": [{"name": "xen1"}], "vms": [{"name": f"vm{i:04d}"} for i in range(1000)]}
    big = SiteStore.create(tmp_path / "big.json", scenario)
    one = next(u for u, v in big.state["vms"].items() if not v["control_domain"])
    big.close()
    server = SiteServerProcess(big.path)
    try:
        wrapper = write_xe_wrapper(str(tmp_path), big.path, "xen1")
        before = server.cpu_seconds()
        client_cpu = 0.0
        for _ in range(20):
            proc = subprocess.Popen([wrapper, "vm-param-get", f"uuid={one}", "param-name=power-state"],
                                    stdout=subprocess.PIPE)
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.stdout.close()
            assert status == 0 and out == b"running\n"
            client_cpu += usage.ru_utime + usage.ru_stime
        per_call_ms = (server.cpu_seconds() - before + client_cpu) / 20 * 1000
    finally:
        server.stop()
    assert per_call_ms < 5, f"{per_call_ms:.1f} ms of CPU per call"


def test_magic_packets_are_parsed_strictly():
    from hgs.sim.power import parse_magic_packet

    mac = bytes.fromhex("020000000001")
    assert parse_magic_packet(b"\xff" * 6 + mac * 16) == "02:00:00:00:00:01"
    assert parse_magic_packet(b"\xff" * 6 + mac * 15) is None
    assert parse_magic_packet(b"\x00" * 6 + mac * 16) is None


def test_ups_timeline_plays_with_charge_falling_on_battery():
    from hgs.sim.ups import SimUps, parse_timeline

    now = [0.0]
    ups = SimUps(parse_timeline("0:online,10:onbatt,40:lowbatt,60:online"), time_scale=1.0,
                 full_runtime_s=100.0, clock=lambda: now[0])
    seen = []
    for t in (5, 20, 45, 70):
        now[0] = t
        seen.append(ups.snapshot())
    assert [s["state"] for s in seen] == ["online", "onbatt", "lowbatt", "online"]
    assert seen[1]["charge_pct"] == pytest.approx(90.0) and seen[2]["charge_pct"] == pytest.approx(65.0)
    assert seen[1]["runtime_s"] == 90
    # drained on through low battery until t=60 (50 %), then recharging: 10 s at 100 % per 7200 s
    assert seen[3]["charge_pct"] == pytest.approx(50.0 + 1000 / 7200, abs=0.05)
    with pytest.raises(ValueError, match="SECONDS:STATE"):
        parse_timeline("soon:onbatt")
