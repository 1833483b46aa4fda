"""hgs's readers against the REAL daemons: apcupsd (net mode) and NUT upsd with dummy-ups."""

import json

from hgs.ups import nis, nut
from hgs.ups.status import UpsState
from harness import run_hgs, wait_for


def _apc_state(lab):
    return nis.read_status("127.0.0.1", lab.nis_port, timeout_s=3).state


def test_real_apcupsd_on_line_on_battery_back_and_low_battery(real_apcupsd):
    lab = real_apcupsd
    wait_for(lambda: _apc_state(lab) is UpsState.ON_LINE, 15, "apcupsd to report on line")
    status = nis.read_status("127.0.0.1", lab.nis_port)
    assert status.raw.split()[0] == "ONLINE" and "SLAVE" in status.raw.split()
    assert status.charge_pct == 100.0 and status.runtime_s == 1800

    lab.ups.set_state("onbatt")
    wait_for(lambda: _apc_state(lab) is UpsState.ON_BATTERY, 15, "apcupsd to report on battery")
    lab.ups.set_state("online")
    wait_for(lambda: _apc_state(lab) is UpsState.ON_LINE, 15, "apcupsd to report on line again")

    lab.ups.set_state("lowbatt")
    wait_for(lambda: _apc_state(lab) is UpsState.LOW_BATTERY, 15, "apcupsd to report low battery")
    # apcupsd then starts its own shutdown and says SHUTTING DOWN: hgs reads it as forced shutdown.
    wait_for(lambda: _apc_state(lab) is UpsState.FORCED_SHUTDOWN, 20, "apcupsd to report SHUTTING DOWN")
    # apccontrol runs the doshutdown event as a process of its own: it may land just after
    wait_for(lambda: "doshutdown" in lab.events.read_text().split(), 10, "apccontrol's doshutdown event")
    assert "onbattery" in lab.events.read_text().split()


def test_hgs_status_reads_real_apcupsd(real_apcupsd, make_config):
    lab = real_apcupsd
    wait_for(lambda: _apc_state(lab) is UpsState.ON_LINE, 15, "apcupsd to report on line")
    lab.ups.set_state("onbatt")
    wait_for(lambda: _apc_state(lab) is UpsState.ON_BATTERY, 15, "apcupsd to report on battery")
    config = make_config(ups=f"'daemon': 'apcupsd', 'address': '127.0.0.1:{lab.nis_port}'")
    human = run_hgs("status", "--ups-only", "--config", str(config))
    assert human.returncode == 0, human.stderr
    assert "on battery" in human.stdout and "battery charge:" in human.stdout
    result = run_hgs("status", "--ups-only", "--json", "--config", str(config))
    report = json.loads(result.stdout)["ups"]
    assert report["state"] == "on_battery" and report["error"] is None
    assert 90 <= report["charge_pct"] <= 100 and report["runtime_s"] > 1500


def _nut_state(lab, **kw):
    return nut.read_status("127.0.0.1", lab.port, "dummy", timeout_s=3, **kw)


def test_real_nut_on_line_on_battery_low_battery_and_back(real_nut):
    lab = real_nut
    status = _nut_state(lab)
    assert (status.state, status.charge_pct, status.runtime_s) == (UpsState.ON_LINE, 100.0, 1800)
    lab.set_status("OB DISCHRG", 80, 1200)
    status = wait_for(lambda: (s := _nut_state(lab)).state is UpsState.ON_BATTERY and s, 10, "upsd: on battery")
    assert (status.charge_pct, status.runtime_s) == (80.0, 1200)
    lab.set_status("OB LB", 9, 95)
    status = wait_for(lambda: (s := _nut_state(lab)).state is UpsState.LOW_BATTERY and s, 10, "upsd: low battery")
    assert status.runtime_s == 95
    lab.set_status("FSD OB LB", 8, 90)
    wait_for(lambda: _nut_state(lab).state is UpsState.FORCED_SHUTDOWN, 10, "upsd: forced shutdown")
    lab.set_status("OL CHRG", 10, 100)
    wait_for(lambda: _nut_state(lab).state is UpsState.ON_LINE, 10, "upsd: on line again")


def test_real_nut_with_login_and_driver_loss(real_nut):
    lab = real_nut
    assert _nut_state(lab, user=lab.user, password=lab.password).state is UpsState.ON_LINE
    lab.stop_driver()
    status = wait_for(lambda: (s := _nut_state(lab)).state is UpsState.COMM_LOST and s, 15, "upsd: driver lost")
    assert status.raw.startswith("ERR ")


def test_hgs_status_names_an_unknown_nut_ups(real_nut, make_config):
    config = make_config(ups=f"'daemon': 'nut', 'address': 'nosuchups@127.0.0.1:{real_nut.port}'")
    result = run_hgs("status", "--config", str(config))
    assert result.returncode == 1
    assert "upsd does not know this UPS name" in result.stdout
    config = make_config(ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{real_nut.port}'", name="ok.py")
    result = run_hgs("status", "--ups-only", "--json", "--config", str(config))
    assert result.returncode == 0 and json.loads(result.stdout)["ups"]["state"] == "on_line"


def test_doshutdown_only_if_critical_reads_the_real_nut_ups_first(real_nut, make_config):
    """NUT's LOWBATT comes with the LB flag whatever the line state: on line it changes nothing;
    on battery with LB, or FSD, the site is forced down."""
    config = make_config(ups=f"'daemon': 'nut', 'address': 'dummy@127.0.0.1:{real_nut.port}'",
                         extra="TIMINGS = {'doshutdown_bound_s': 3}\nMAIL = {'when': 'never'}\n")
    log = config.parent / "log" / "hgs.log"
    real_nut.set_status("OL LB CHRG", 20, 300)
    wait_for(lambda: _nut_state(real_nut).raw == "OL LB CHRG", 10, "upsd: on line, low battery")
    ignored = run_hgs("doshutdown", "--only-if-critical", "--config", str(config))
    assert ignored.returncode == 0
    text = log.read_text()
    assert "reads on line (OL LB CHRG): not critical; the event is logged and ignored" in text
    assert "forcing every VM and host down" not in text
    for status in ("OB LB DISCHRG", "FSD OL"):
        real_nut.set_status(status, 5, 60)
        wait_for(lambda: _nut_state(real_nut).raw == status, 10, f"upsd: {status}")
        before = log.read_text().count("forcing every VM and host down")
        run_hgs("doshutdown", "--only-if-critical", "--config", str(config))
        assert log.read_text().count("forcing every VM and host down") == before + 1, status
    real_nut.stop_driver()  # upsd answers, without data: not a reading of "on battery"
    wait_for(lambda: _nut_state(real_nut).state is UpsState.COMM_LOST, 15, "upsd: driver lost")
    before = log.read_text().count("forcing every VM and host down")
    assert run_hgs("doshutdown", "--only-if-critical", "--config", str(config)).returncode == 0
    assert "reads comm lost" in log.read_text().splitlines()[-1]
    assert log.read_text().count("forcing every VM and host down") == before
