"""hgs install apcupsd|nut|cron: put the hooks in place (backing up what was there), or take
them out again with --uninstall. Idempotent."""

import os
import shutil
import sys


def add_arguments(parser):
    parser.add_argument("target", choices=("apcupsd", "nut", "cron"),
                        help="apcupsd: event scripts in its SCRIPTDIR; nut: the upssched command script (and, with "
                             "--write, upsmon.conf/upssched.conf); cron: the boot-time resume")
    parser.add_argument("--uninstall", action="store_true", help="remove hgs's hooks and restore what was there")
    parser.add_argument("--scriptdir", default="/etc/apcupsd", help="apcupsd's SCRIPTDIR (default /etc/apcupsd)")
    parser.add_argument("--nut-dir", default="/etc/nut", help="NUT's configuration folder (default /etc/nut)")
    parser.add_argument("--write", action="store_true",
                        help="nut: also edit upsmon.conf and upssched.conf (backed up first); without it the lines "
                             "are printed for you to add")
    parser.add_argument("--upssched", default="/sbin/upssched", help="nut: the upssched program (default /sbin/upssched)")
    parser.add_argument("--shutdown-command", default="/sbin/shutdown -h +0",
                        help="nut: what SHUTDOWNCMD runs after 'hgs doshutdown' (default: /sbin/shutdown -h +0)")
    parser.add_argument("--cron-file", default="/etc/cron.d/hgs", help="cron: the file to write (default /etc/cron.d/hgs)")
    parser.add_argument("--hgs", help="the hgs program the hooks call (default: this one)")


def hgs_program():
    beside = os.path.join(os.path.dirname(sys.executable), "hgs")
    return beside if os.path.exists(beside) else (shutil.which("hgs") or beside)


def run(ctx):
    from hgs import install

    args = ctx.args
    config = os.path.abspath(ctx.config_path)
    if not args.uninstall:
        ctx.settings  # a hook calling hgs with a broken config would fail at the worst moment: check now
    hgs = os.path.abspath(args.hgs or hgs_program())
    try:
        if args.target == "apcupsd":
            actions = install.apcupsd(args.scriptdir, hgs, config, args.uninstall)
        elif args.target == "cron":
            actions = install.cron(args.cron_file, hgs, config, args.uninstall)
        else:
            actions, blocks = install.nut(args.nut_dir, hgs, config, write=args.write, uninstall=args.uninstall,
                                          upssched=args.upssched, shutdown=args.shutdown_command)
            if not args.uninstall and not args.write:
                for name, lines in blocks.items():
                    ctx.out(f"Add to {os.path.join(args.nut_dir, name)} (and remove any other lines for the same "
                            "events), or rerun with --write:")
                    for line in lines:
                        ctx.out(f"    {line}")
    except ValueError as err:
        from hgs.install import InstallError

        raise InstallError(str(err)) from None
    for action in actions:
        ctx.out(action)
    return 0
