"""The three actions in the self-test's plan check and in 'hgs status' (pure functions)."""

import logging
from types import SimpleNamespace

from hgs.commands.selftest import Checks, check_plan
from hgs.commands.status import snapshot_stands
from hgs.flows.snapshot import State

from test_shed_config import load

RUNNING = [{"uuid": f"u-{n}", "name": n, "order": 0, "tools": True} for n in ("db", "web", "build", "dc")]
RESULTS = [{"master": True, "running": RUNNING}]


def plan_line(tmp_path, vms, timings, runtime_s):
    settings = load(tmp_path, f"VMS = {vms!r}\nTIMINGS = {timings!r}\n")
    checks = Checks(logging.getLogger("hgs.test.selftest"))
    check_plan(settings, checks, SimpleNamespace(runtime_s=runtime_s), RESULTS)
    return checks.items[0]


def test_selftest_counts_each_action_and_weighs_the_shed_stage_in_the_worst_case(tmp_path):
    timings = {"vm_shutdown_timeout_s": 100, "vm_force_timeout_s": 20, "host_shutdown_timeout_s": 100}
    vms = {"shed": {"vms": ["build"]}, "suspend": ["dc"]}
    kind, _, text = plan_line(tmp_path, vms, timings, 600)
    # main: db, web, dc in one group (120 s) + one host stage (100 s) = 220 s; the shed stage first: +120 s
    assert kind == "ok" and text.startswith("worst case 340 s (2 VM(s) to shut down, 1 to suspend in 1 group(s), "
                                            "1 shed first)")
    kind, _, text = plan_line(tmp_path, vms, timings, 400)
    assert kind == "FAIL" and "the worst case (340 s:" in text


def test_selftest_with_the_runtime_trigger_says_when_the_main_shutdown_starts(tmp_path):
    timings = {"vm_shutdown_timeout_s": 100, "vm_force_timeout_s": 20, "host_shutdown_timeout_s": 100,
               "main_trigger": "runtime"}
    kind, _, text = plan_line(tmp_path, {"shed": {"vms": ["build"]}}, timings, 400)
    assert kind == "ok" and text.startswith("worst case 220 s")  # shedding happens before the trigger's wait
    assert "the main shutdown starts when the runtime left falls to 220 s + 120 s reserve" in text


def test_status_shows_the_action_and_where_each_vm_stands(tmp_path):
    settings = load(tmp_path, "")
    vms = {"u-build": {"uuid": "u-build", "name": "build", "action": "shed", "shed": True},
           "u-dc": {"uuid": "u-dc", "name": "dc", "action": "suspend"},
           "u-db": {"uuid": "u-db", "name": "db", "action": "shutdown"}}
    state = State.from_dict({"schema": 2, "phase": "shutting_down", "snapshot": {"vms": vms, "hosts": {}}})
    stands = {vm["name"]: (vm["action"], vm["stands"]) for vm in snapshot_stands(settings, state, None)}
    assert stands == {"build": ("shed", "down: shed (started again if the power returns first)"),
                      "dc": ("suspend", "running: to suspend"), "db": ("shutdown", "running: to shut down")}
