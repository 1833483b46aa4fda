"""The `hgs` command line: global options, the command table, exit codes.

Each command lives in ``hgs.commands.<module>`` with ``add_arguments(parser)`` and
``run(ctx) -> exit code``. Command modules import their heavy dependencies inside ``run`` so
that a hook's fast path (and ``hgs --version``) stays cheap. To add a command, add a row to
COMMANDS and a module.

Exit codes: 0 ok, 1 failed, 2 usage or configuration error.
"""

import argparse
import importlib
import sys

from hgs import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# name -> (module, one sentence for --help)
COMMANDS = {
    "init": ("init", "Write a starter config from the shipped example, make hgs's SSH key, print the next steps."),
    "onbattery": ("onbattery", "The power failed: confirm the outage, then shut the VMs and hosts down cleanly."),
    "offbattery": ("offbattery", "The power is back: once stable, wake the hosts and start exactly the VMs that ran."),
    "doshutdown": ("doshutdown", "This box is about to halt: force every VM and host down now, within a bound."),
    "selftest": ("selftest", "Check the whole chain without changing anything (for cron); exit 0 when all is well."),
    "trust": ("trust", "Show a host's SSH key fingerprint and pin it after confirmation (--replace for a changed key)."),
    "install": ("install", "Put the hooks for apcupsd, NUT or cron in place (backing up what was there); --uninstall."),
    "demo": ("demo", "Run a whole outage and restore against a built-in simulated XenServer pool and UPS."),
    "check-config": ("check_config", "Validate the configuration and print the resolved settings, secrets masked."),
    "status": ("status", "Show the UPS, each host, the VMs, the current phase and the last runs (--json)."),
    "testmail": ("testmail", "Send a test mail through the configured sendmail, with this run's log in it."),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"hgs: error: {message}\n")


NO_CONFIG = {"demo"}  # commands that bring their own configuration


def _common(parser, suppress, config=True):
    default = argparse.SUPPRESS if suppress else None
    if config:
        parser.add_argument("--config", metavar="PATH", default=default,
                            help="the configuration module (default: /etc/hgs/config.py)")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                        help="more detail on stderr (-vv for debug)")


def build_parser():
    parser = _Parser(
        prog="hgs",
        description="hgs (Heritage Graceful Shutdown) brings XenServer / XCP-ng hosts and their VMs down "
        "cleanly when the UPS runs on battery, and back up when the power returns.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage or configuration error. "
        "Run 'hgs COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"hgs {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(f"hgs.commands.{module_name}")
        command_parser = sub.add_parser(name, help=summary, description=summary)
        _common(command_parser, suppress=True, config=name not in NO_CONFIG)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command in NO_CONFIG and args.config:
        parser.exit(EXIT_USAGE, f"hgs: error: {args.command} takes no --config: it writes its own for its simulated "
                                "site\n")
    from hgs.commands import Context

    return Context(args).execute(args._module)
