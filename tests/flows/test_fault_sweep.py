"""The fault sweep: every fault kind at every call position of the outage, then random pairs.

For the fake 3-host HA pool (VMs with and without tools, stubborn, one whose force fails, a
'last' one), each run injects faults into the calls the flow makes to the world (xe, the UPS,
the state file) and must end with: every host sent host-shutdown and off, members before the
master, pool HA off, every VM halted, each fault the flow could see named in the report and the
mail, and the outcome saying so (exit 1, or 'N fault(s) recovered'). The same for the forced
flow of 'hgs doshutdown', which must also send every host down within its bound.

With HGS_WRITE_RELIABILITY=1 the figures are written into docs/reliability.md. Alone, the sweep
takes 50 random pairs (a couple of seconds); tests/run (HGS_THOROUGH=1) and the figures take 200.
"""

import os
import re
from pathlib import Path

import pytest

from flowfakes import KINDS_FOR, rng, run_outage

PAIRS = 200 if os.environ.get("HGS_THOROUGH") == "1" or os.environ.get("HGS_WRITE_RELIABILITY") == "1" else 50
SEED = 12
HOSTS = ("master", "member1", "member2")
DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- begin: outage fault sweep -->", "<!-- end: outage fault sweep -->"
FIGURES = {}


def baseline_calls(make):
    s = make()
    run(s)
    return [(p, group, call) for p, group, call, _ in s.faults.calls], s


def run(s):
    if s.forced:
        return run_outage(s, confirm=False, escalated=lambda: True)
    return run_outage(s)


def accepted_order(s):
    order, first = [], {}
    for t, _, call, args, result in s.log_calls:
        if call == "host-shutdown" and result == "ok" and args[0] not in first:
            first[args[0]] = t
            order.append(args[0])
    return order, first


def consequence(fault):
    """For a fault the adapter hides from the flow by its contract, returns what the report says
    instead ('' for nothing but the outcome); None for a fault the flow sees as an exception or an
    error result (it must be named). A session dropped under host-shutdown is 'sent, session
    dropped' (the host may be going down); a batch channel that dies has no error text; garbage
    lines from a batch are ignored (the VMs' outcomes come from the power-state poll)."""
    if fault.call == "host-shutdown" and fault.kind in ("lost", "hang"):
        return "session dropped"
    if fault.call.startswith("vm-shutdown") and fault.kind == "lost":
        return "the connection dropped"
    if fault.call.startswith("vm-shutdown") and fault.kind == "garbage":
        return ""
    return None


def check(s, report, mailer, code, bound_s=None):
    """Returns the problems of one run ([] when the site was protected), and its figures."""
    problems = []
    order, first = accepted_order(s)
    powers = s.host_powers()
    if set(order) != set(HOSTS) or set(powers.values()) != {"off"}:
        problems.append(f"hosts not all sent down: sent {order}, powers {powers}")
    elif order.index("master") < max(order.index("member1"), order.index("member2")):
        problems.append(f"the master went before a member: {order}")
    if not any(c[2] == "pool-ha-disable" for c in s.log_calls) or s.ha_enabled:
        problems.append("pool HA not turned off")
    if set(s.vm_states().values()) != {"halted"}:
        problems.append(f"VMs not halted: {s.vm_states()}")
    summary = report.summary()
    body = mailer.sent[0][1] if mailer.sent else ""
    said = [f for f in s.faults.injected if consequence(f) != ""]
    for fault in said:
        text = consequence(fault) or fault.message
        if text not in summary or text not in body:
            problems.append(f"fault not named in the report and the mail: {fault.message} ({text!r})")
    # a dropped session under host-shutdown is what a host going down does: named, not a fault of the run
    if any(consequence(f) != "session dropped" for f in said) and not (code == 1 or report.recovered):
        problems.append(f"the outcome does not say a fault happened: {report.result!r}, exit {code}")
    all_sent = max(first.values()) if len(first) == len(HOSTS) else None
    if bound_s is not None and (all_sent is None or all_sent >= 0.85 * bound_s):
        problems.append(f"hosts not all sent within 0.85 x the {bound_s:.0f} s bound (last at {all_sent})")
    fault_at = min((f.at for f in s.faults.injected), default=None)
    lag = None if all_sent is None or fault_at is None else all_sent - fault_at
    return problems, all_sent, lag


def sweep(make, label, bound_s=None):
    calls, _ = baseline_calls(make)
    s = make()
    flow, report, mailer, code = run(s)
    base_problems, base_sent, _ = check(s, report, mailer, code, bound_s)
    assert not base_problems and code == 0 and not report.faults, base_problems or report.summary()
    plans = [{p: kind} for p, group, _ in calls for kind in KINDS_FOR[group]]
    r = rng(SEED)
    for _ in range(PAIRS):
        (p1, g1, _), (p2, g2, _) = sorted(r.sample(calls, 2))
        plans.append({p1: r.choice(KINDS_FOR[g1]), p2: r.choice(KINDS_FOR[g2])})
    failures, injected, protected, slowest, delay, singles = [], 0, 0, 0.0, 0.0, 0
    for plan in plans:
        s = make(plan=plan)
        flow, report, mailer, code = run(s)
        problems, all_sent, lag = check(s, report, mailer, code, bound_s)
        injected += len(s.faults.injected)
        singles += len(plan) == 1
        if not problems:
            protected += 1
        else:
            failures.append((plan, problems[:3]))
        if lag is not None:
            slowest = max(slowest, lag)
        if all_sent is not None:
            delay = max(delay, all_sent - base_sent)
    FIGURES[label] = {"positions": len(calls), "runs": len(plans), "singles": singles, "pairs": len(plans) - singles,
                      "injected": injected, "protected": protected, "slowest_s": slowest, "delay_s": delay,
                      "baseline_s": base_sent, "bound_s": bound_s}
    assert not failures, "\n".join(f"{plan}: {problems}" for plan, problems in failures[:10]) + \
        f"\n({len(failures)} of {len(plans)} runs failed)"


def test_every_fault_at_every_position_of_the_outage_then_random_pairs(site):
    sweep(lambda plan=None: site(plan=plan), "outage (onbattery)")


def test_every_fault_at_every_position_of_doshutdown_then_random_pairs(site):
    def make(plan=None):
        return site(plan=plan, forced=True)

    bound_s = make().settings.timings.doshutdown_bound_s
    sweep(make, "forced shutdown (doshutdown)", bound_s)


@pytest.fixture(scope="module", autouse=True)
def write_figures():
    yield
    if os.environ.get("HGS_WRITE_RELIABILITY") != "1" or len(FIGURES) != 2:
        return
    lines = [BEGIN, "## The outage fault sweep (fast layer)", "",
             "Generated by `HGS_WRITE_RELIABILITY=1 python -m pytest tests/flows/test_fault_sweep.py` (virtual",
             "time, a fake 3-host pool with HA on: VMs with and without guest tools, one that ignores the clean",
             "shutdown, one whose forced shutdown fails, a 'last' one). Each fault kind is injected at every call",
             f"position the flow makes to the world, one at a time, then {PAIRS} random pairs (seed {SEED}).",
             "Kinds: for an xe call an xe error, a lost connection, a hang past the call's deadline (the clock",
             "moves on by it, then RemoteTimeout), garbage output (a parse error), an unexpected exception; for",
             "the UPS reader and the state file an error of their own and an unexpected exception. Times are",
             "virtual seconds from the start of the flow. A run counts as protected when every host was",
             "sent host-shutdown and is off (members before the master), pool HA is off, every VM halted, each",
             "fault the flow could see is named in the report and the mail, and the exit code (1) or the",
             "outcome ('N fault(s) recovered') says so; for doshutdown, every host-shutdown was also sent within",
             "0.85 x its bound.", "",
             "| flow | call positions | runs (single + pairs) | faults injected | runs with every host shut down "
             "| slowest fault to last host-shutdown | most a fault delayed it | baseline |",
             "|---|---|---|---|---|---|---|---|"]
    for label, f in FIGURES.items():
        bound = "" if f["bound_s"] is None else f" (bound {f['bound_s']:.0f} s)"
        lines.append(f"| {label} | {f['positions']} | {f['runs']} ({f['singles']} + {f['pairs']}) | {f['injected']} | "
                     f"{f['protected']} of {f['runs']} | {f['slowest_s']:.1f} s | {f['delay_s']:.1f} s | "
                     f"all hosts sent at {f['baseline_s']:.1f} s{bound} |")
    lines += ["", "Two kinds are hidden from the flow by the adapter's contract and are checked by their",
              "consequence instead: a session that drops under host-shutdown is 'sent, session dropped' (the host",
              "may be going down; it is sent again at half the host deadline if it still answers), and garbage",
              "lines from a batch of VM shutdowns are ignored (the VMs' outcomes come from the power-state poll).",
              END]
    text = DOC.read_text() if DOC.exists() else "# Reliability\n"
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
