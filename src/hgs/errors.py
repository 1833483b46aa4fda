"""The one error tree of hgs.

Every error a user can meet is an ``HgsError`` whose ``str()`` says what is wrong and,
where hgs knows, what to do. The CLI prints ``str(err)``; tracebacks go to the log only.
"""


class HgsError(Exception):
    """Base of every error hgs reports to a person."""

    exit_code = 1


class ConfigError(HgsError):
    """The configuration is missing, unreadable or wrong; ``problems`` lists every mistake."""

    exit_code = 2

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        lines = [f"{self.path}: {len(self.problems)} problem(s) in the configuration:"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class UpsError(HgsError):
    """The UPS daemon could not be read (down, silent, closed early, or spoke garbage)."""



# ---- what a host (or the network to it) can do to you -------------------------------------

class RemoteFault(HgsError):
    """Everything a host can do to a flow: unreachable, refused, silent, cut off, or its
    hypervisor refused the call. A flow catches this one class for "that host failed us"."""


class RemoteError(RemoteFault):
    """The host could not be reached or refused us (the message says which and what to do)."""


class HostKeyError(RemoteError):
    """The host's key is not pinned, or it changed: a fatal error for that host."""


class UnsafeTrustFile(HostKeyError):
    """The SSH key or hgs's known_hosts (or a folder above them) is open to other users: refused,
    not retried, with the command that fixes it."""


class NotStarted(RemoteError):
    """No channel could be opened for a command (the connection failed first, or the host did
    not answer the request): the command never started."""


class ChannelRefused(NotStarted):
    """The host refused a new channel on a live connection (its sshd's MaxSessions): the
    command never started."""


class RemoteTimeout(RemoteError):
    """A command did not finish within its deadline (the channel is closed)."""


class ConnectionLost(RemoteError):
    """The connection dropped while a command ran (e.g. the host powered off)."""


class RemoteInterrupted(RemoteError):
    """A remote step was cut short because the flow was told to stop (``interrupt()``)."""


class OutputTooLarge(RemoteError):
    """A command sent more output than hgs accepts from one call (the channel is closed)."""


class LookupFailed(RemoteFault):
    """A name did not resolve and no address of it is known."""


class HypervisorError(RemoteFault):
    """The hypervisor ran a call and refused it, or cannot run calls at all.

    ``kind`` is one of hgs's kinds (``hgs.flows.ports.Kind``, a str: "failed", "booting",
    "not_disabled", "missing"...): what a flow acts on. ``reason`` is the backend's own short
    words for it (for a person), ``str()`` the whole message."""

    kind = "failed"

    def __init__(self, message, kind=None, reason=None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.reason = reason or message


class XeCallError(HypervisorError):
    """xe ran and failed; ``error`` is the classified XeError, ``kind`` hgs's word for it."""

    def __init__(self, where, argv, error, kind="failed"):
        self.error = error
        super().__init__(f"{where}: xe {argv[0]} failed: {error.summary}", kind, error.summary)


class XeMissing(HypervisorError):
    """xe is not at the configured path on the host (or cannot be run)."""

    kind = "missing"


class BadUuid(HypervisorError):
    """Text from the hypervisor was expected to be a uuid and is not."""


# ---- this box: its files, its lock, its own sending ----------------------------------------

class LocalFault(HgsError):
    """Something on this box failed: a file, the lock, the mailer, the network card."""


class StateError(LocalFault):
    """The state file cannot be read or written."""


class NewerStateError(StateError):
    """The state file was written by a newer hgs (a schema this one does not know)."""

    def __init__(self, schema, known, source="the state file"):
        self.schema, self.known, self.source = schema, known, source
        super().__init__(f"{source} was written by a newer hgs (schema {schema}; this hgs reads schemas up to "
                         f"{known}): upgrade hgs to read it, or, if the site is up, move the file aside; an outage "
                         "flow keeps it aside itself and takes a new snapshot")


class LockError(LocalFault):
    """The lock file cannot be created or locked (disk full, read-only, permissions): not
    another flow holding it. A protective flow runs without the lock then, and says so."""


class UnsafeFile(LocalFault):
    """A trusted file, or a folder above it, is open to other users; the message says what to run."""


class MailError(LocalFault):
    """The mail could not be handed to sendmail."""


class WakeError(LocalFault):
    """The magic packet could not be sent."""


# ---- putting hgs in place ------------------------------------------------------------------

class SetupError(HgsError):
    """hgs could not be put in place: bad input to a setup command, or a file it cannot write."""


class InstallError(SetupError):
    """A hook could not be put in place (the message names the file and why)."""


class InitError(SetupError):
    """Bad input to hgs init, or a file it cannot write."""

    exit_code = 2
