#!/usr/bin/env python3
"""What load shedding buys: the runtime left at the start of the main shutdown, with and
without shedding, on the demo site with a UPS drained by the site's load.

Drives the REAL outage flow (`hgs onbattery --foreground`, as the hook runs it) against the
`hgs demo --scenario shed` site (hgs.sim.shed_demo: the demo pool plus two heavy build VMs,
1500 W in all, 650 W of them in the build VMs; the simulated battery holds ``--battery`` s
at full load). For each main trigger (TIMINGS['main_trigger'] 'window' and 'runtime') it runs
one outage with the build VMs shed at confirmation and one without, and prints, for each:
when the main shutdown began (seconds after the power failure, from the first pool-ha-disable
the simulator recorded) and the true runtime left then (the simulated UPS's own figure at
the present load; apcupsd's NIS reports it rounded to 0.1 minute).

Usage: .venv/bin/python bench/shed.py [--battery 26]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hgs.sim.shed_demo import ShedSite, full_load_w


def one_outage(folder, battery_s, shed, trigger):
    lab = ShedSite(folder, battery_s, shed=shed, trigger=trigger)
    try:
        lab.fail_power()
        result = subprocess.run([sys.executable, "-m", "hgs", "--config", str(lab.config), "onbattery",
                                 "--foreground"], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise SystemExit(f"hgs onbattery failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        main_at, runtime_left = lab.main_started()
        end = lab.ups.readings[-1] if lab.ups.readings else (None, None, None, None)
        return main_at, runtime_left, end[2]
    finally:
        lab.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battery", type=float, default=26.0, help="runtime of the full battery at full load (s)")
    args = parser.parse_args(argv)
    print(f"demo site, {full_load_w():.0f} W at full load (build VMs 650 W), battery {args.battery:g} s at full "
          "load; main shutdown worst case 17 s + 3 s reserve = 20 s runtime trigger")
    print(f"{'main trigger':<13} {'shedding':<9} {'main shutdown began':>20} {'runtime left then':>18} "
          f"{'charge at the end':>18}")
    rows = []
    for trigger in ("window", "runtime"):
        for shed in (False, True):
            with tempfile.TemporaryDirectory(prefix="hgs-bench-shed-") as folder:
                started = time.monotonic()
                main_at, runtime_left, charge = one_outage(Path(folder), args.battery, shed, trigger)
            rows.append((trigger, shed, main_at, runtime_left, charge))
            print(f"{trigger:<13} {'yes' if shed else 'no':<9} {main_at:>18.1f} s {runtime_left:>16} s "
                  f"{charge:>16} %   (run took {time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
