"""`hgs demo --scenario shed` and bench/shed.py: load shedding on the demo site, with a battery
drained by the site's load (hgs.sim.load).

The demo site gains two heavy build VMs, shed as soon as the outage is confirmed; the main
shutdown waits for the runtime trigger (TIMINGS['main_trigger'] = 'runtime'). Deadlines are
short and the battery small, so the whole story takes well under a minute: the power fails,
the build VMs go down, the runtime left climbs as the load drops, then drains to the trigger,
the rest goes down, the power returns and everything comes back, the build VMs too.
"""

import copy
import shutil
import tempfile
import threading
import time
from pathlib import Path

from hgs.sim import demo
from hgs.sim.lab import SimSite
from hgs.sim.load import LoadedUps, site_load_w
from hgs.sim.ups import NisServer

SCENARIO = copy.deepcopy(demo.SCENARIO)
SCENARIO["vms"] += [{"name": "build", "host": "xen1", "order": 2, "shutdown_s": 40, "start_s": 30},
                    {"name": "ci", "host": "xen2", "order": 2, "shutdown_s": 30, "start_s": 30}]
WATTS = {"build": 350.0, "ci": 300.0, "cache": 50.0, "legacy-nt4": 50.0, "stubborn": 50.0}
HOST_W = 150.0
# main shutdown worst case: 3 groups x (2 + 1 s) + 2 host stages x 4 s = 17 s; + 3 s reserve: trigger at 20 s
TIMINGS = dict(demo.TIMINGS, vm_shutdown_timeout_s=2, vm_force_timeout_s=1, host_shutdown_timeout_s=4,
               confirm_outage_s=2, main_trigger="runtime")
RESERVE_S = 3
SHED = "VMS = {'stop_last': ['storage'], 'shed': {'vms': ['build', 'ci'], 'at': 'confirmed'}}\n"
NO_SHED = "VMS = {'stop_last': ['storage']}\n"


def full_load_w(scenario=SCENARIO):
    """The site's load with every host on and every VM of the scenario running (the UPS's rating)."""
    vms = [v for v in scenario["vms"] if v.get("power_state", "running") == "running"]
    return HOST_W * len(scenario["hosts"]) + sum(WATTS.get(v["name"], 100.0) for v in vms)


class ShedSite:
    """The demo site, a load-drained UPS (``battery_s`` of runtime at full load) and a config."""

    def __init__(self, folder, battery_s, shed=True, trigger="runtime", sendmail=None):
        self.folder = Path(folder)
        self.site = SimSite(self.folder / "site", SCENARIO, front_door="inprocess")
        self.ups = LoadedUps(site_load_w(self.site.store, WATTS, host_w=HOST_W), full_load_w(),
                             name="demo-ups", full_runtime_s=battery_s)
        self.nis = NisServer(self.ups)
        self.config = self.folder / "config.py"
        ups = (f"{{'daemon': 'apcupsd', 'address': '127.0.0.1:{self.nis.port}', 'poll_interval_s': 0.25, "
               f"'runtime_reserve_s': {RESERVE_S}}}")
        mail = (f"MAIL = {{'to': ['admin@example.com'], 'sendmail_path': {str(sendmail)!r}, 'when': 'always'}}\n"
                if sendmail else "MAIL = {'when': 'never'}\n")
        self.config.write_text(self.site.config_text(ups, dict(TIMINGS, main_trigger=trigger),
                                                     extra=(SHED if shed else NO_SHED) + mail))
        self.config.chmod(0o600)

    def main_started(self):
        """Returns (seconds from the power failure, runtime left then) of the main shutdown's
        first step (pool-ha-disable), from the site's call log and the UPS's readings."""
        calls = [c for c in self.site.store.calls() if c["argv"][:1] == ["pool-ha-disable"]]
        if not calls:
            return None, None
        at = calls[0]["t"] - self.failed_at
        before = [r for r in self.ups.readings if r[0] <= self.failed_s + at + 0.01]
        return at, before[-1][3] if before else None

    def fail_power(self):
        self.failed_at, self.failed_s = time.time(), self.ups.elapsed_s()
        self.ups.set_state("onbatt")

    def stop(self):
        self.site.stop()
        self.nis.stop()


def run(out, keep=False):
    """Runs the shed demo; returns 0 when every VM runs again at the end and the main shutdown
    started at the runtime trigger."""
    folder = Path(tempfile.mkdtemp(prefix="hgs-demo-shed-"))
    timeline = demo.Timeline(out)
    stop = threading.Event()
    lab = None
    try:
        print("hgs demo --scenario shed: the demo pool plus two heavy build VMs (build, ci) that are shed as soon\n"
              "as the outage is confirmed; the rest goes down when the UPS's runtime left falls to the plan's\n"
              "worst case plus reserve (20 s here). The battery drains by the site's load: 26 s at full load.\n",
              file=out)
        mail_dir = folder / "mail"
        mail_dir.mkdir()
        sendmail = folder / "sendmail"
        sendmail.write_text(demo.CAPTURE_SENDMAIL.format(folder=mail_dir))
        sendmail.chmod(0o755)
        lab = ShedSite(folder, battery_s=26, sendmail=sendmail)
        before = demo.running_vms(lab.site.store)
        timeline.say("demo", f"running before the outage: {', '.join(before)}")
        threading.Thread(target=demo._watch_site, args=(lab.site.store, timeline, stop), daemon=True).start()
        threading.Thread(target=_watch_ups, args=(lab.ups, timeline, stop), daemon=True).start()
        time.sleep(0.3)
        lab.fail_power()
        timeline.say("ups", f"POWER FAILED: {lab.ups.snapshot()['runtime_s']} s of runtime at the present load")
        code_out, _ = demo._run_flow(timeline, lab.config, "onbattery")
        main_at, runtime_then = lab.main_started()
        timeline.say("demo", f"outage flow finished (exit {code_out}); the main shutdown began {main_at or 0:.1f} s "
                     f"after the power failure, with {runtime_then} s of runtime left")
        lab.ups.set_state("online")
        timeline.say("ups", "POWER IS BACK: the UPS is on line; apcupsd calls the offbattery hook")
        code_in, _ = demo._run_flow(timeline, lab.config, "offbattery")
        timeline.say("demo", f"restore flow finished (exit {code_in})")
        stop.set()
        after = demo.running_vms(lab.site.store)
        demo.print_mails_and_result(out, mail_dir, before, after)
        print(f"main shutdown began {main_at or 0:.1f} s after the power failure with {runtime_then} s of runtime "
              "left (bench/shed.py measures it with and without shedding)", file=out)
        ok = after == before and code_out == 0 and code_in == 0 and main_at is not None
        print(f"demo took {time.monotonic() - timeline.start:.1f} s; "
              + ("the site ended as it started." if ok else "the site did NOT end as it started."), file=out)
        if keep:
            print(f"files kept in {folder}", file=out)
        return 0 if ok else 1
    finally:
        stop.set()
        if lab is not None:
            lab.stop()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _watch_ups(ups, timeline, stop):
    """Says the UPS's load and runtime left when the load changes, and every 5 s of runtime."""
    last = None
    while not stop.wait(0.2):
        if not ups.readings:
            continue
        _, load, charge, runtime = ups.readings[-1]
        if not ups.on_battery:
            continue
        key = (round(load), runtime // 5)
        if key != last:
            timeline.say("ups", f"on battery: load {load:.0f} W, charge {charge:g} %, runtime left {runtime} s")
            last = key
