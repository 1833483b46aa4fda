"""What every command shares: loading the config, the run's log, and error handling."""

import sys
import traceback

from hgs import config as config_module
from hgs.errors import HgsError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Context:
    """Given the parsed arguments, gives a command its settings, log and output streams."""

    def __init__(self, args, stdout=None, stderr=None):
        self.args = args
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.config_path = args.config or config_module.DEFAULT_CONFIG_PATH
        self.verbose = getattr(args, "verbose", 0) or 0
        self._settings = None
        self.run_log = None
        self.notifier = None  # hgs.net.notify.Notifier of a flow command, made on its first notice

    @property
    def settings(self):
        """The loaded Settings; raises ConfigError on the first use if the file is wrong."""
        if self._settings is None:
            self._settings = config_module.load(self.config_path)
        return self._settings

    def start_log(self, to_file=True):
        """Starts this run's log (run id, stderr, log file, syslog); returns the RunLog."""
        from hgs.box.log import RunLog, new_run_id

        settings = self.settings
        self.run_log = RunLog(
            getattr(self.args, "run_id", None) or new_run_id(), verbose=self.verbose,
            log_file=settings.paths.log_file if to_file else None,
            syslog_address=settings.logging.syslog_address if (to_file and settings.logging.syslog) else None,
            stderr=self.stderr,
        )
        return self.run_log

    def out(self, text=""):
        print(text, file=self.stdout)

    def execute(self, module):
        """Runs ``module.run(self)``; turns every error into a message and an exit code."""
        try:
            return module.run(self)
        except HgsError as err:
            print(f"hgs: {err}", file=self.stderr)
            if self.run_log:
                self.run_log.logger.error("%s", err)
            return err.exit_code
        except KeyboardInterrupt:
            print("hgs: interrupted", file=self.stderr)
            return 130
        except Exception as err:  # a crash is a bug: say so, keep the traceback in the log
            detail = traceback.format_exc()
            if self.run_log:
                self.run_log.logger.error("internal error: %s", err, exc_info=True)
                where = "the log"
            else:
                where = "the output above"
                print(detail, file=self.stderr)
            print(f"hgs: internal error: {type(err).__name__}: {err} (this is a bug in hgs; the traceback is in {where})",
                  file=self.stderr)
            return EXIT_FAILED
        finally:
            if self.notifier is not None:
                self.notifier.close()  # each notice still running ends within its own deadline
            if self.run_log:
                self.run_log.close()
