"""hgs install apcupsd|nut|cron: put the hooks in place (backing up what was there), or take
them out again with --uninstall. Idempotent."""

import os
import shutil
import sys


def add_arguments(parser):
    parser.add_argument("target", choices=("apcupsd", "nut", "cron"),
                        help="apcupsd: event scripts in its SCRIPTDIR; nut: the upssched command script and the sudo "
                             "rule for upsmon's user (and, with --write, upsmon.conf/upssched.conf); cron: the daily "
                             "self-test and the boot-time resume")
    parser.add_argument("--uninstall", action="store_true", help="remove hgs's hooks and restore what was there")
    parser.add_argument("--scriptdir", default="/etc/apcupsd", help="apcupsd's SCRIPTDIR (default /etc/apcupsd)")
    parser.add_argument("--nut-dir", default="/etc/nut", help="NUT's configuration folder (default /etc/nut)")
    parser.add_argument("--write", action="store_true",
                        help="nut: also edit upsmon.conf and upssched.conf (backed up first, owner/group/mode kept); "
                             "without it the lines are printed for you to add")
    parser.add_argument("--upssched", default="/sbin/upssched", help="nut: the upssched program (default /sbin/upssched)")
    parser.add_argument("--shutdown-command",
                        help="nut: what SHUTDOWNCMD runs after 'hgs doshutdown' (default: upsmon.conf's own "
                             "SHUTDOWNCMD, else /sbin/shutdown -h +0)")
    parser.add_argument("--user", help="nut: the user upsmon runs its NOTIFYCMD as (default: upsmon.conf's "
                                       "RUN_AS_USER, else nut)")
    parser.add_argument("--sudoers-file", default="/etc/sudoers.d/hgs",
                        help="nut: the sudoers drop-in letting that user run the hooks' hgs commands as root "
                             "(default /etc/sudoers.d/hgs)")
    parser.add_argument("--cron-file", default="/etc/cron.d/hgs", help="cron: the file to write (default /etc/cron.d/hgs)")
    parser.add_argument("--hgs", help="the hgs program the hooks call (default: this one)")


def hgs_program():
    beside = os.path.join(os.path.dirname(sys.executable), "hgs")
    return beside if os.path.exists(beside) else (shutil.which("hgs") or beside)


def _settings_or_none(ctx):
    from hgs.errors import HgsError

    try:
        return ctx.settings
    except HgsError:
        return None


def run(ctx):
    from hgs.setup import hooks
    from hgs.setup import install
    from hgs.setup.install import InstallError

    args = ctx.args
    config = os.path.abspath(ctx.config_path)
    # a hook calling hgs with a broken config would fail at the worst moment: check now
    settings = _settings_or_none(ctx) if args.uninstall else ctx.settings
    hgs = os.path.abspath(args.hgs or hgs_program())
    entry = None
    try:
        if args.target == "apcupsd":
            if settings is not None and not args.uninstall and settings.ups.daemon != "apcupsd":
                raise InstallError(f"UPS['daemon'] is '{settings.ups.daemon}' in {config}: hgs reads the UPS "
                                   f"from {settings.ups.daemon}, so its hooks go there (hgs install nut)")
            actions = install.apcupsd(args.scriptdir, hgs, config, args.uninstall)
            entry = {"scripts": [os.path.join(os.path.abspath(args.scriptdir), e) for e in hooks.APCUPSD_EVENTS],
                     "user": "root"}
        elif args.target == "cron":
            actions = install.cron(args.cron_file, hgs, config, args.uninstall)
            entry = {"file": os.path.abspath(args.cron_file)}
        else:
            ups = None
            if settings is not None and not args.uninstall:
                if settings.ups.daemon != "nut":
                    raise InstallError(f"UPS['daemon'] is '{settings.ups.daemon}' in {config}: hgs reads the UPS "
                                       "from apcupsd, so its hooks go into apcupsd (hgs install apcupsd)")
                ups = (settings.ups.ups_name, settings.ups.host, settings.ups.port)
            nut_dir = os.path.abspath(args.nut_dir)
            actions, plan = install.nut(nut_dir, hgs, config, ups, write=args.write, uninstall=args.uninstall,
                                        sudoers_file=args.sudoers_file, upssched=args.upssched,
                                        shutdown=args.shutdown_command, user=args.user)
            entry = {"scripts": [plan["cmdscript"]], "user": plan["user"], "nut_dir": nut_dir,
                     "sudoers": os.path.abspath(args.sudoers_file) if plan["user"] != "root" else None}
            if not args.uninstall and not args.write:
                for name in ("upsmon.conf", "upssched.conf"):
                    where = "at its top, before any AT line" if name == "upssched.conf" else "at its end"
                    ctx.out(f"Add to {os.path.join(args.nut_dir, name)} ({where}; comment out your own lines for the "
                            "same settings), or rerun with --write:")
                    for line in plan[name]:
                        ctx.out(f"    {line}")
                if plan["previous"]:
                    ctx.out(f"Commands other than hgs's go on to your CMDSCRIPT {plan['previous']}.")
    except ValueError as err:
        raise InstallError(str(err)) from None
    except OSError as err:
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        raise InstallError(f"cannot change{where}: {err.strerror or err}; nothing after that was done") from None
    if settings is not None:
        install.record(settings.paths.state_dir, args.target, None if args.uninstall else entry)
    for action in actions:
        ctx.out(action)
    return 0
