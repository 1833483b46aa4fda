"""Pure pieces with tables: shutdown groups, the battery budget, xe output and errors."""

from types import SimpleNamespace

import pytest

from hgs.config import Timings, VmPolicy
from hgs.flows import plan
from hgs.flows.snapshot import VmRecord
from hgs.hypervisors.xen import xe


def vm(name, order=0, tools=True):
    return VmRecord(f"u-{name}", name, order=order, tools=tools)


@pytest.mark.parametrize("policy,expected", [
    (VmPolicy(), [["a", "b"], ["c"]]),
    (VmPolicy(stop_last=("b",)), [["a"], ["c"], ["b"]]),
    (VmPolicy(groups=(("c",), ("a",))), [["b"], ["c"], ["a"]]),
    (VmPolicy(groups=(("a", "c"),), stop_last=("c",)), [["b"], ["a"], ["c"]]),
    (VmPolicy(stop_last=("u-a",)), [["b"], ["c"], ["a"]]),  # by uuid too
    (VmPolicy(groups=(("a",), ("a", "b"))), [["c"], ["a"], ["b"]]),  # first group wins
])
def test_groups(policy, expected):
    vms = [vm("a", 2), vm("b", 2), vm("c", 1)]
    assert [[v.name for v in g] for g in plan.build_groups(vms, policy)] == expected


def timings(**kw):
    base = dict(charge_wait_s=3600, unreachable_retry_s=120, confirm_outage_s=30, vm_shutdown_timeout_s=100, vm_force_timeout_s=20, xe_timeout_s=30,
                ssh_connect_timeout_s=10, host_shutdown_timeout_s=60, host_down_confirm_s=5, doshutdown_bound_s=40,
                restore_confirm_s=60, host_boot_timeout_s=600, wol_resend_interval_s=30, xapi_ready_timeout_s=300,
                vm_start_timeout_s=180, verify_timeout_s=300)
    base.update(kw)
    return Timings(**base)


@pytest.mark.parametrize("runtime,reserve,grace,worst", [
    (None, 120, 100, 2 * 120 + 2 * 60),      # unknown runtime: as configured
    (10_000, 120, 100, 360),                  # plenty
    (480, 120, 100, 360),                     # exactly enough
    (400, 120, 60, 280),                      # 280 available - 160 fixed (2 forces, 2 host stages) = 120 / 2 groups
    (100, 120, 0, 160),                       # not even the forced path: force at once
])
def test_budget(runtime, reserve, grace, worst):
    b = plan.budget(timings(), groups=2, host_stages=2, runtime_s=runtime, reserve_s=reserve)
    assert b.grace_s == pytest.approx(grace) and b.worst_case_s == pytest.approx(worst)
    assert bool(b.notes) == (grace != 100)


def test_timeline_names_groups_deadlines_hosts_and_runtime():
    b = plan.budget(timings(), 1, 1, 1000, 120)
    lines = plan.timeline([[vm("db", tools=False)]], [["xen1"]], b, 1000)
    text = "\n".join(lines)
    assert "group 1: clean shutdown of 1 VM(s) in parallel: db (no tools: forced at once)" in text
    assert "+   100 s  group 1: deadline" in text and "hosts: disable + shutdown xen1" in text
    assert "worst case 180 s; UPS runtime 1000 s (880 s after the reserve)" in text


@pytest.mark.parametrize("stderr,code,params", [
    ("You attempted an operation on a VM that was not in an appropriate power state at the time; ...\n"
     "vm: 0910b6d8-58d1-5b57-805f-d4716c769e10 (db: 1)\nexpected: running\nactual: halted\n",
     "VM_BAD_POWER_STATE", {"vm": "0910b6d8-58d1-5b57-805f-d4716c769e10 (db: 1)", "expected": "running",
                            "actual": "halted"}),
    ("You attempted an operation on a VM which lacks the feature.\nvm: x (y)\n", "VM_LACKS_FEATURE", {"vm": "x (y)"}),
    ("The host toolstack is still initialising. Please wait.\n", "HOST_STILL_BOOTING", {}),
    ("This operation cannot be performed because the host is not disabled. Please disable the host and then try "
     "again.\n", "HOST_NOT_DISABLED", {}),
    ("No matching VMs found\n", "NO_MATCHING_VMS", {}),
    ("something new\n", "OTHER", {}),
])
def test_error_classification_by_description(stderr, code, params):
    error = xe.classify(stderr)
    assert error.code == code and error.params == params


@pytest.mark.parametrize("bad", ["", "X", "0910b6d8-58d1-5b57-805f-d4716c769e1", "0910b6d8-58d1-5b57-805f-d4716c769e10;id",
                                 "0910B6D8-58D1-5B57-805F-D4716C769E10", "$(id)"])
def test_commands_refuse_anything_but_a_uuid(bad):
    with pytest.raises(xe.BadUuid):
        xe.vm_shutdown(bad)


def test_batch_script_quotes_the_xe_path_and_reports_each_call():
    u = "0910b6d8-58d1-5b57-805f-d4716c769e10"
    script = xe.batch_script("/opt/my xe/xe", [(u, xe.vm_shutdown(u, force=True))])
    assert "'/opt/my xe/xe' vm-shutdown uuid=" + u + " --force" in script and script.endswith("wait")
    assert xe.parse_result_line(f"hgs-result {u} 1 Zm9v") == (u, 1, "foo")
    assert xe.parse_result_line("hgs-result not-a-uuid 0") is None
    assert xe.parse_result_line(f"hgs-result {u} 0") == (u, 0, "")


def test_record_parser_keeps_a_forged_line_inside_the_name():
    text = ("uuid ( RO)           : 0910b6d8-58d1-5b57-805f-d4716c769e10\n"
            "    power-state ( RO): running\n"
            "     name-label ( RW): evil\n"
            "    power-state ( RO): halted\n\n")
    records = xe.parse_records(text)
    assert records == [{"uuid": "0910b6d8-58d1-5b57-805f-d4716c769e10", "power-state": "running",
                        "name-label": "evil"}]


def test_match_config_by_name_then_unique_address():
    from hgs.flows.outage import match_config
    from hgs.hypervisors.xen.backend import HostInfo

    settings = [SimpleNamespace(name="xen1", address="10.0.0.1"), SimpleNamespace(name="b", address="10.0.0.2")]
    infos = [HostInfo("u1", "xen1", "10.0.0.9", True), HostInfo("u2", "other", "10.0.0.2", True),
             HostInfo("u3", "x", "10.0.0.7", True)]
    assert {k: v.name for k, v in match_config(infos, settings).items()} == {"u1": "xen1", "u2": "b"}
