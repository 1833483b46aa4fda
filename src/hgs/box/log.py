"""Logging for one run: a run id, and lines to stderr, the log file, syslog and the mail.

Every run gets an id that appears on every line, so the lines of one run can be picked out
of the shared log file and syslog. The run's own lines are also kept in memory for the mail.
A message is always one line: control characters in it (a VM name's newline, a terminal
escape) are escaped.
"""

import logging
import logging.handlers
import os
import secrets
import sys
import time

from hgs.box.text import shown

LOGGER_NAME = "hgs"
FORMAT = "%(asctime)s %(run_id)s %(levelname)-7s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def new_run_id():
    """Returns a run id like '20261121-080309-3fa2' (sortable, unique enough per box)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class _RunIdFilter(logging.Filter):
    def __init__(self, run_id):
        super().__init__()
        self.run_id = run_id

    def filter(self, record):
        record.run_id = self.run_id
        # one record is one line: a VM name with a newline or an escape sequence in it must not
        # write a fake line (tracebacks go in exc_info, which the formatter adds after this)
        try:
            message = record.getMessage()
        except Exception:  # a bad format: logging reports it when the handler formats the record
            return True
        record.msg, record.args = shown(message), ()
        return True


class _MemoryHandler(logging.Handler):
    """Keeps the formatted lines of this run for the mail (bounded)."""

    def __init__(self, max_lines=20000):
        super().__init__()
        self.lines = []
        self.max_lines = max_lines

    def emit(self, record):
        if len(self.lines) < self.max_lines:
            self.lines.append(self.format(record))
        elif len(self.lines) == self.max_lines:
            self.lines.append("... (log truncated for the mail; the log file has everything)")


class RunLog:
    """Given a run id, sets up the 'hgs' logger; ``text()`` returns this run's lines.

    ``log_file`` and ``syslog_address`` may be None. A log file or syslog that cannot be
    opened is reported on stderr and skipped: logging must never stop a shutdown.
    """

    def __init__(self, run_id, verbose=0, log_file=None, syslog_address=None, stderr=None):
        self.run_id = run_id
        self.logger = logging.getLogger(LOGGER_NAME)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        detail = logging.DEBUG if verbose >= 2 else logging.INFO
        formatter = logging.Formatter(FORMAT, DATE_FORMAT)
        run_filter = _RunIdFilter(run_id)
        self.memory = _MemoryHandler()
        self._add(self.memory, detail, formatter, run_filter)
        stream = stderr if stderr is not None else sys.stderr
        person = verbose > 0 or (hasattr(stream, "isatty") and stream.isatty())
        self._add(logging.StreamHandler(stream), detail if person else logging.WARNING,
                  logging.Formatter("%(levelname)s: %(message)s" if not person else "%(asctime)s %(levelname)-7s %(message)s",
                                    "%H:%M:%S"), run_filter)
        self.file_error = None
        if log_file:
            try:
                self._add(_open_log_file(log_file), detail, formatter, run_filter)
            except OSError as err:
                self.file_error = f"cannot write the log file {log_file}: {err.strerror or err}"
                self.logger.warning("%s; continuing without it", self.file_error)
        if syslog_address and os.path.exists(syslog_address):
            try:
                handler = logging.handlers.SysLogHandler(address=syslog_address)
                handler.ident = f"hgs[{os.getpid()}]: "
                self._add(handler, logging.INFO, logging.Formatter("%(run_id)s %(levelname)s %(message)s"), run_filter)
            except OSError as err:
                self.logger.warning("cannot reach syslog at %s (%s); continuing without it", syslog_address, err)

    def _add(self, handler, level, formatter, run_filter):
        handler.setLevel(level)
        handler.setFormatter(formatter)
        handler.addFilter(run_filter)
        self.logger.addHandler(handler)

    def text(self):
        """Returns this run's log lines as one string."""
        return "\n".join(self.memory.lines) + ("\n" if self.memory.lines else "")

    def close(self):
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()


ROTATE_BYTES = 5 * 1024 * 1024
ROTATE_KEEP = 5


def rotate(path, max_bytes=ROTATE_BYTES, keep=ROTATE_KEEP):
    """Renames hgs.log to hgs.log.1 (and .1 to .2, ...) once it is larger than ``max_bytes``."""
    try:
        if os.path.getsize(path) <= max_bytes:
            return False
        for index in range(keep - 1, 0, -1):
            if os.path.exists(f"{path}.{index}"):
                os.replace(f"{path}.{index}", f"{path}.{index + 1}")
        os.replace(path, f"{path}.1")
        return True
    except OSError:
        return False


def _open_log_file(path):
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    rotate(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.close(fd)
    return logging.FileHandler(path, encoding="utf-8")


def get_logger():
    return logging.getLogger(LOGGER_NAME)
