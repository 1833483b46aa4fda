"""`hgs demo`: a whole outage and restore against a simulated pool, on loopback, as root or not.

The demo starts the simulated site (a master and a member, eight VMs with the quirks real
sites have, HA on) behind in-process SSH servers, and a simulated UPS speaking apcupsd's
NIS. It then runs the REAL flows exactly as the apcupsd hooks run them: `hgs onbattery
--foreground` when the UPS goes on battery, `hgs offbattery --foreground` when the power is
back. While they run it prints a live timeline: what the UPS says, every VM and host as its
power changes, and hgs's own log. The mails go to a stand-in sendmail and are printed.
"""

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hgs.sim import site as sitemod
from hgs.sim.lab import SimSite
from hgs.sim.ups import NisServer, SimUps

SCENARIO = {
    "time_scale": 60,  # one simulated minute per real second
    "pool": {"name": "demo-pool", "ha_enabled": True},
    "hosts": [
        {"name": "xen1", "master": True, "mac": "02:00:00:00:00:01", "shutdown_s": 30, "boot_s": 120,
         "xapi_start_s": 90},
        {"name": "xen2", "mac": "02:00:00:00:00:02", "shutdown_s": 30, "boot_s": 100, "xapi_start_s": 60},
    ],
    "vms": [
        {"name": "db", "host": "xen1", "order": 1, "start_delay": 60, "shutdown_s": 90, "start_s": 60},
        {"name": "web1", "host": "xen2", "order": 2, "shutdown_s": 40, "start_s": 30},
        {"name": "web2", "host": "xen1", "order": 2, "shutdown_s": 45, "start_s": 30},
        {"name": "cache", "host": "xen2", "order": 2, "shutdown_s": 20, "start_s": 20},
        {"name": "legacy-nt4", "host": "xen2", "order": 2, "tools": False, "start_s": 40},
        {"name": "stubborn", "host": "xen1", "order": 2, "quirk": "ignores_shutdown", "start_s": 30},
        {"name": "storage", "host": "xen1", "order": 0, "shutdown_s": 60, "start_s": 45},
        {"name": "old-test", "host": "xen2", "power_state": "halted"},
    ],
}

TIMINGS = {"confirm_outage_s": 3, "vm_shutdown_timeout_s": 4, "vm_force_timeout_s": 3, "xe_timeout_s": 15,
           "host_shutdown_timeout_s": 12, "host_down_confirm_s": 0.5, "restore_confirm_s": 3,
           "host_boot_timeout_s": 30, "wol_resend_interval_s": 5, "xapi_ready_timeout_s": 30,
           "vm_start_timeout_s": 20, "verify_timeout_s": 20}

CAPTURE_SENDMAIL = """#!/bin/sh
# The demo's stand-in for sendmail -t -oi: keeps each mail in a file instead of delivering it.
cat > "{folder}/mail-$(date +%s%N).eml"
"""


class Timeline:
    """Prints lines with the time since the demo started; one lock, so lines never mix."""

    def __init__(self, out):
        self.out = out
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def say(self, source, text):
        with self.lock:
            print(f"{time.monotonic() - self.start:6.1f}s  {source:<5} {text}", file=self.out, flush=True)


def _watch_site(store, timeline, stop):
    """Reports every VM and host power change of the site until ``stop`` is set."""
    seen = {}
    while not stop.wait(0.05):
        try:
            state = store.read()
        except (OSError, ValueError):
            continue
        now = {}
        for host in state["hosts"].values():
            phase = sitemod.host_phase(state, host)
            label = {"up": "up" if host["shutdown_at"] is None else "shutting down", "off": "powered off",
                     "booting": "booting", "starting": "OS up, xapi starting"}[phase]
            if host["power"] == "on" and not host["enabled"] and host["shutdown_at"] is None:
                label = "disabled"
            now[f"host {host['name']}"] = label
        for vm in state["vms"].values():
            if not vm["control_domain"]:
                busy = {"clean_shutdown": "shutting down", "start": "starting"}.get(vm.get("busy") or "", "")
                now[f"vm   {vm['name']}"] = busy or vm["power_state"]
        now["pool HA"] = "on" if state["pool"]["ha_enabled"] else "off"
        for key, value in now.items():
            if seen.get(key) != value:
                if key in seen:
                    timeline.say("site", f"{key}: {value}")
                seen[key] = value


def _run_flow(timeline, config, command):
    """Runs `hgs COMMAND --foreground -v` as a hook would; streams its log; returns its exit code and output."""
    argv = [sys.executable, "-m", "hgs", "--config", str(config), "-v", command, "--foreground"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = []

    def pump():
        for line in proc.stdout:
            stdout.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    for line in proc.stderr:
        text = line.rstrip("\n")
        if text:
            timeline.say("hgs", text.split(" ", 1)[1] if text[:2].isdigit() else text)
    proc.wait()
    reader.join(5)
    return proc.returncode, "".join(stdout)


def print_mails_and_result(out, mail_dir, before, after):
    """Prints each mail hgs sent (captured in ``mail_dir``), then which VMs ran before and after."""
    for path in sorted(mail_dir.glob("*.eml")):
        print(f"\n----- the mail hgs sent ({path.name}) -----", file=out)
        print(path.read_text(errors="replace").rstrip(), file=out)
    print("\n----- result -----", file=out)
    print(f"running before: {', '.join(before)}", file=out)
    print(f"running after:  {', '.join(after)}", file=out)


def running_vms(store):
    return sorted(v["name"] for v in store.read()["vms"].values()
                  if not v["control_domain"] and v["power_state"] == "running")


SCENARIOS = ("pool", "shed")


def run(out=sys.stdout, keep=False, scenario="pool"):
    """Runs the whole demo; returns 0 when the site ends as it started. ``scenario`` "shed":
    load shedding and the runtime trigger (hgs.sim.shed_demo)."""
    if scenario == "shed":
        from hgs.sim import shed_demo

        return shed_demo.run(out, keep)
    folder = Path(tempfile.mkdtemp(prefix="hgs-demo-"))
    timeline = Timeline(out)
    site = ups = nis = None
    stop = threading.Event()
    try:
        print("hgs demo: a simulated XenServer pool (xen1 master, xen2 member, HA on) with 8 VMs, on a UPS\n"
              "watched by a simulated apcupsd. Times: one simulated minute per real second.\n", file=out)
        site = SimSite(folder / "site", SCENARIO, front_door="inprocess")
        ups = SimUps(name="demo-ups", full_runtime_s=1800)
        nis = NisServer(ups)
        mail_dir = folder / "mail"
        mail_dir.mkdir()
        sendmail = folder / "sendmail"
        sendmail.write_text(CAPTURE_SENDMAIL.format(folder=mail_dir))
        sendmail.chmod(0o755)
        config = folder / "config.py"
        ups_block = f"{{'daemon': 'apcupsd', 'address': '127.0.0.1:{nis.port}', 'poll_interval_s': 0.5}}"
        config.write_text(site.config_text(ups_block, TIMINGS, extra=(
            "VMS = {'stop_last': ['storage']}\n"
            f"MAIL = {{'to': ['admin@example.com'], 'sendmail_path': {str(sendmail)!r}, 'when': 'always'}}\n")))
        config.chmod(0o600)
        before = running_vms(site.store)
        timeline.say("demo", f"running before the outage: {', '.join(before)} (old-test is halted)")
        watcher = threading.Thread(target=_watch_site, args=(site.store, timeline, stop), daemon=True)
        watcher.start()

        time.sleep(0.5)
        ups.set_state("onbatt")
        timeline.say("ups", "POWER FAILED: the UPS runs on battery; apcupsd calls the onbattery hook")
        code_out, out_text = _run_flow(timeline, config, "onbattery")
        timeline.say("demo", f"outage flow finished (exit {code_out})")

        time.sleep(1.0)
        ups.set_state("online")
        timeline.say("ups", "POWER IS BACK: the UPS is on line; apcupsd calls the offbattery hook")
        code_in, in_text = _run_flow(timeline, config, "offbattery")
        timeline.say("demo", f"restore flow finished (exit {code_in})")
        stop.set()
        watcher.join(2)

        after = running_vms(site.store)
        state = site.store.read()
        same = (after == before and state["pool"]["ha_enabled"]
                and all(h["power"] == "on" and h["enabled"] for h in state["hosts"].values()))
        print_mails_and_result(out, mail_dir, before, after)
        print(f"pool HA: {'on' if state['pool']['ha_enabled'] else 'OFF'}; hosts: "
              + ", ".join(f"{h['name']} {h['power']}" for h in state["hosts"].values()), file=out)
        print(f"demo took {time.monotonic() - timeline.start:.1f} s; "
              + ("the site ended as it started." if same and code_out == 0 and code_in == 0
                 else "the site did NOT end as it started."), file=out)
        if keep:
            print(f"files kept in {folder}", file=out)
        return 0 if same and code_out == 0 and code_in == 0 else 1
    finally:
        stop.set()
        if site is not None:
            site.stop()
        if nis is not None:
            nis.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
