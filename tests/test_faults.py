"""Faults injected into full flows (real sshd fronting the simulated xe): each ends with the
site safe or a clear failure, and nothing lost. Each test is a row of docs/reliability.md."""

import os
import signal
import subprocess
import time

import pytest

from harness import HGS, run_hgs, wait_for, write

fault = pytest.mark.fault

SITE = {"time_scale": 60,
        "hosts": [{"name": "xen1", "mac": "02:00:00:00:0e:01", "shutdown_s": 20, "boot_s": 60, "xapi_start_s": 60}],
        "vms": [{"name": f"vm{i}", "shutdown_s": 120 + 30 * i} for i in range(4)]}
ALL_DOWN = {f"vm{i}": "halted" for i in range(4)}
ALL_UP = {f"vm{i}": "running" for i in range(4)}


def lab_for(site_lab, scenario=SITE, timings=None, extra="MAIL = {'when': 'never'}\n", **kwargs):
    base = {"vm_shutdown_timeout_s": 20}
    base.update(timings or {})
    return site_lab(scenario, timings=base, extra=extra, **kwargs)


def sessions_of(door):
    """PIDs of the per-connection sshd processes under a host's sshd (not the listener)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(door.proc.pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@fault("the SSH connection drops mid-shutdown (session killed)", "hgs reconnects and finishes; site down")
def test_connection_dropped_mid_shutdown(site_lab):
    lab = lab_for(site_lab)
    flow = subprocess.Popen([HGS, "--config", str(lab.config), "onbattery", "--foreground"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(lab.calls("vm-shutdown")) >= 4, 20, "the shutdowns to start")
        time.sleep(0.3)
        for pid in sessions_of(lab.site.doors["xen1"]):
            os.kill(pid, signal.SIGKILL)
        out, _ = flow.communicate(timeout=60)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
    assert flow.returncode == 0, out
    assert lab.site.vm_states() == ALL_DOWN
    assert "xen1: shut down, confirmed down" in out
    assert lab.site.doors["xen1"].connections >= 2  # it reconnected


@fault("the host's sshd is down when the outage starts and comes back later", "retried until it answers; site down")
def test_sshd_down_at_the_start_comes_back(site_lab):
    lab = lab_for(site_lab, timings={"unreachable_retry_s": 30})
    lab.site.doors["xen1"].down()
    threading_timer = __import__("threading").Timer(4.0, lab.site.doors["xen1"].up)
    threading_timer.start()
    result = lab.hgs("onbattery", "--foreground")
    threading_timer.join()
    assert result.returncode == 0, result.stdout
    assert lab.site.vm_states() == ALL_DOWN
    assert "xen1 does not answer" in lab.log_text() and "xen1 answers now" in lab.log_text()


@fault("the host's sshd never comes back", "clear failure after the retry window; exit 1; nothing changed")
def test_sshd_down_for_good(site_lab):
    lab = lab_for(site_lab, timings={"unreachable_retry_s": 3})
    lab.site.doors["xen1"].down()
    start = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 1 and time.monotonic() - start < 20
    assert "failed: no host answered" in result.stdout and "xen1 did not answer" in result.stdout


@fault("an xe read hangs (vm-list blocks for 60 s)", "hgs's deadline cuts it; the shutdown goes on; site down")
def test_a_hanging_xe_read_is_cut_by_the_deadline(site_lab):
    lab = lab_for(site_lab, timings={"xe_timeout_s": 2})
    lab.site.store.set_fault("pool-list", 0)
    hung = {"done": False}

    def hang_reads_once_shutdowns_run():
        wait_for(lambda: lab.calls("vm-shutdown"), 20, "the shutdowns")
        lab.site.store.set_fault("vm-list", 60)
        hung["done"] = True

    import threading

    threading.Thread(target=hang_reads_once_shutdowns_run, daemon=True).start()
    start = time.monotonic()
    result = lab.hgs("onbattery", "--foreground")
    assert hung["done"]
    assert result.returncode == 0, result.stdout
    assert time.monotonic() - start < 40
    assert "cannot read the VM power states" in lab.log_text() and "no result within 2 s" in lab.log_text()
    assert lab.site.vm_states() == ALL_DOWN


@fault("a VM ignores the clean shutdown and its forced shutdown fails", "vm-reset-powerstate; the host still goes down")
def test_ignored_shutdown_and_failed_force_are_reset(site_lab):
    scenario = dict(SITE, vms=[{"name": "mule", "quirk": "ignores_shutdown,force_fails"}, {"name": "ok"}])
    lab = lab_for(site_lab, scenario)
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert "mule: reset in" in result.stdout and "vm-reset-powerstate" in result.stdout
    assert lab.site.vm_states() == {"mule": "halted", "ok": "halted"}
    assert lab.calls("vm-reset-powerstate") and "xen1: shut down, confirmed down" in result.stdout


@fault("the host ignores host-shutdown", "sent again once, then reported: STILL UP, exit 1, failure mail")
def test_host_ignoring_shutdown_is_sent_again_then_reported(site_lab, postfix):
    scenario = dict(SITE, hosts=[dict(SITE["hosts"][0], quirk="ignores_shutdown")])
    lab = lab_for(site_lab, scenario, timings={"host_shutdown_timeout_s": 4},
                  extra="MAIL = {'to': ['root'], 'subject_tag': '[hgs-fault-host]'}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 1
    assert "xen1: STILL UP" in result.stdout and "sent again" in result.stdout
    assert len(lab.calls("host-shutdown")) == 2
    mail = postfix.wait_for_text("[hgs-fault-host] outage site down with failures")
    assert "FAILED" in mail and "STILL UP" in mail


@fault("the UPS daemon stops answering during confirmation (policy 'not_an_outage')",
       "not a confirmed outage: nothing touched")
def test_ups_lost_during_confirmation_is_not_an_outage(site_lab):
    lab = lab_for(site_lab, timings={"confirm_outage_s": 2})
    lab.nis.stop()
    result = lab.hgs("onbattery")  # as the hook: records the event, flow detached
    assert result.returncode == 0
    wait_for(lambda: "outage flow finished" in lab.log_text(), 30, "the flow to end")
    assert "lost contact is not a confirmed outage" in lab.log_text()
    assert lab.calls("vm-shutdown") == [] and lab.site.vm_states() == ALL_UP


@fault("the UPS daemon stops answering after an onbattery event (policy 'outage')", "treated as an outage: site down")
def test_ups_lost_after_onbattery_with_policy_outage(site_lab):
    lab = lab_for(site_lab, timings={"confirm_outage_s": 2})
    lab.write_config(lab.timings, lab.extra, ups_extra=", 'lost_contact': 'outage'")
    lab.nis.stop()
    assert lab.hgs("onbattery").returncode == 0
    wait_for(lambda: "outage flow finished" in lab.log_text(), 60, "the flow to end")
    assert "treated as confirmed" in lab.log_text()
    assert lab.site.vm_states() == ALL_DOWN


@fault("sendmail is missing", "the run completes; the log file has everything; exit 0")
def test_missing_sendmail_does_not_stop_the_run(site_lab):
    lab = lab_for(site_lab, extra="MAIL = {'sendmail_path': '/nonexistent/sendmail'}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert lab.site.vm_states() == ALL_DOWN
    log = lab.log_text()
    assert "the run's mail could not be sent: no sendmail at /nonexistent/sendmail" in log
    assert "vm3: clean after" in log and "outage flow finished: site down" in log


@fault("sendmail fails (exit 75)", "the run completes; the failure is logged")
def test_failing_sendmail_does_not_stop_the_run(site_lab, tmp_path):
    fake = write(tmp_path / "sendmail", "#!/bin/sh\ncat >/dev/null\necho 'queue write error' >&2\nexit 75\n", 0o755)
    lab = lab_for(site_lab, extra=f"MAIL = {{'sendmail_path': '{fake}'}}\n")
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0
    assert "sendmail exited with status 75: queue write error" in lab.log_text()


@fault("the state dir cannot be written (a file stands where the folder should be)",
       "clear error in the log; the hardware is still protected; snapshot logged; exit 1")
def test_state_dir_unwritable(site_lab, tmp_path):
    lab = lab_for(site_lab)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    lab.config.write_text(lab.config.read_text().replace(str(lab.site.workdir / "state"), str(blocker / "state")))
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 1, result.stdout  # the restore cannot know what to start: a failure to act on
    assert lab.site.vm_states() == ALL_DOWN
    assert "cannot write the state file" in lab.log_text() and "the hardware comes first" in lab.log_text()
    assert "FAULT: state not saved" in result.stdout


@fault("the disk holding the state is full", "clear error; the hardware is still protected; exit 1")
def test_state_disk_full(site_lab, tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        (mount / "filler").write_bytes(b"x" * 60 * 1024)
        with open(mount / "filler2", "wb") as handle:
            try:
                handle.write(b"x" * 64 * 1024)
            except OSError:
                pass
        lab = lab_for(site_lab)
        lab.config.write_text(lab.config.read_text().replace(str(lab.site.workdir / "state"), str(mount / "state")))
        result = lab.hgs("onbattery", "--foreground")
        assert result.returncode == 1, result.stdout  # the snapshot is only in the log: said as a failure
        assert lab.site.vm_states() == ALL_DOWN
        assert "cannot write the state file" in lab.log_text()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@fault("hgs is killed (SIGKILL) mid-shutdown and started again by the next event",
       "it resumes; the snapshot keeps every VM; the restore starts them all")
def test_killed_mid_shutdown_resumes_from_the_state_file(site_lab):
    lab = lab_for(site_lab)
    flow = subprocess.Popen([HGS, "--config", str(lab.config), "onbattery", "--foreground"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "halted" in lab.site.vm_states().values(), 30, "the first VM to halt")
    flow.send_signal(signal.SIGKILL)
    flow.wait()
    assert "running" in lab.site.vm_states().values()
    assert lab.state_file()["phase"] == "shutting_down"
    result = lab.hgs("onbattery", "--foreground")
    assert result.returncode == 0, result.stdout
    assert lab.site.vm_states() == ALL_DOWN
    assert sorted(v["name"] for v in lab.state_file()["snapshot"]["vms"].values()) == sorted(ALL_UP)
    lab.ups.set_state("online")
    assert lab.hgs("offbattery", "--foreground").returncode == 0
    assert lab.site.vm_states() == ALL_UP


@fault("the config is broken when an event fires", "the hook exits non-zero with a clear syslog line")
def test_broken_config_when_the_hook_fires(make_config, tmp_path):
    import socket

    config = make_config()
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    assert run_hgs("install", "apcupsd", "--scriptdir", str(scripts), "--config", str(config)).returncode == 0
    config.write_text(config.read_text() + "TIMINGS = {'confirm_outage_s': 'soon'}\n")
    sock_path = str(tmp_path / "log.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(5)
    try:
        env = dict(os.environ, HGS_SYSLOG_SOCKET=sock_path)
        result = subprocess.run([str(scripts / "onbattery"), "ups", "1", "0"], env=env, capture_output=True, text=True)
        assert result.returncode == 2
        line = listener.recv(4096).decode(errors="replace")
    finally:
        listener.close()
    assert "hgs" in line and "apcupsd onbattery: hgs failed (exit 2)" in line
