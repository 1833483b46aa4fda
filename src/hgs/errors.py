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


class MailError(HgsError):
    """The mail could not be handed to sendmail."""
