"""One flow at a time per site: an flock()ed file that dies with its holder.

The holder writes its PID into the file, so others can say who holds it. ``hgs doshutdown``
asks a running flow to hurry by creating the escalation file next to the lock.
"""

import errno
import fcntl
import os
import time


class SiteLock:
    def __init__(self, lock_dir):
        self.dir = str(lock_dir)
        self.path = os.path.join(self.dir, "site.lock")
        self.escalation_path = os.path.join(self.dir, "escalate")
        self.fd = None

    def acquire(self, wait_s=0.0, poll_s=0.1, kind="flow"):
        """Takes the lock for a flow of ``kind``, waiting up to ``wait_s``; returns True when held."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {kind}\n".encode())
        self.fd = fd
        return True

    def holder(self):
        """Returns (pid, kind) written by the current holder, or (None, None)."""
        try:
            with open(self.path) as handle:
                pid, _, kind = handle.read().strip().partition(" ")
                return int(pid), kind or "flow"
        except (OSError, ValueError):
            return None, None

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def escalate(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        with open(self.escalation_path, "w") as handle:
            handle.write(f"{os.getpid()}\n")

    def escalated(self):
        return os.path.exists(self.escalation_path)

    def clear_escalation(self):
        try:
            os.unlink(self.escalation_path)
        except FileNotFoundError:
            pass
