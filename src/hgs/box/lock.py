"""One flow at a time per site: an flock()ed file that dies with its holder.

The holder writes its PID into the file, so others can say who holds it. ``hgs doshutdown``
asks a running flow to hurry by creating the escalation file next to the lock.
"""

import errno
import fcntl
import os
import time

from hgs.errors import LockError


class SiteLock:
    def __init__(self, lock_dir):
        self.dir = str(lock_dir)
        self.path = os.path.join(self.dir, "site.lock")
        self.escalation_path = os.path.join(self.dir, "escalate")
        self.fd = None

    def acquire(self, wait_s=0.0, poll_s=0.1, kind="flow"):
        """Takes the lock for a flow of ``kind``, waiting up to ``wait_s``; returns True when
        held, False when another flow holds it. Raises LockError when the lock file cannot be
        made or locked at all (e.g. ENOSPC, EACCES, a read-only or missing folder)."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise LockError(f"cannot create the lock file {self.path}: {err.strerror or err}") from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise LockError(f"cannot lock {self.path}: {err.strerror or err}") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(poll_s)
        try:  # who holds it, for the others; the lock itself does not depend on it (a full disk)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {kind}\n".encode())
        except OSError:
            pass
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
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)
            except OSError:  # the lock dies with the file descriptor anyway
                pass
            self.fd = None

    def escalate(self):
        """Asks the running flow to hurry; raises LockError when the file cannot be written."""
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            with open(self.escalation_path, "w") as handle:
                handle.write(f"{os.getpid()}\n")
        except OSError as err:
            raise LockError(f"cannot write {self.escalation_path}: {err.strerror or err}") from None

    def escalated(self):
        return os.path.exists(self.escalation_path)

    def clear_escalation(self):
        try:
            os.unlink(self.escalation_path)
        except OSError:  # none there, or a folder hgs cannot write: nothing to clear then
            pass
