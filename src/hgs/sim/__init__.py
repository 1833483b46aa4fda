"""The simulated site: a XenServer pool and a UPS, for tests, benchmarks and `hgs demo`."""


def stop_process(proc, grace_s=5.0):
    """Stops a child the simulated site started (by its PID): SIGTERM, then SIGKILL after ``grace_s``."""
    import subprocess

    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
