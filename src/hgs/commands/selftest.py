"""hgs selftest: a read-only check of the whole chain, for cron. Exit 0 when all is well.

Config, UPS daemon, each host (pinned key, SSH, xe, pool master and HA, VMs, guests without
tools, MAC), sendmail, the plan's worst case against the UPS runtime, the state file and the
last run. Every failed check says what is wrong and what to do. Nothing is changed, except
that a site left down by hgs with the mains present gets its restore started.
"""

import os
import re
import shutil
import time

from hgs.commands._flow import detach


def add_arguments(parser):
    parser.add_argument("--mail", choices=("always", "failure", "never"), default="failure",
                        help="when to mail the result (default: on failure)")
    parser.add_argument("--nut-dir", default="/etc/nut",
                        help="NUT's configuration folder, for the secondary's timing check when no 'hgs install nut' "
                             "recorded one (default /etc/nut)")


class Checks:
    def __init__(self, log):
        self.log = log
        self.items = []

    def ok(self, name, text):
        self.items.append(("ok", name, text))
        self.log.info("ok    %s: %s", name, text)

    def warn(self, name, text):
        # logged at info: a warning alone is no failure, and cron must stay silent when all is well
        self.items.append(("warn", name, text))
        self.log.info("warn  %s: %s", name, text)

    def fail(self, name, text):
        self.items.append(("FAIL", name, text))
        self.log.error("FAIL  %s: %s", name, text)

    @property
    def failed(self):
        return any(kind == "FAIL" for kind, _, _ in self.items)

    def lines(self):
        from hgs.box.text import shown

        return [f"{kind:<4}  {shown(name)}: {shown(text)}" for kind, name, text in self.items]


def check_ups(settings, checks):
    from hgs.commands.status import ups_report
    from hgs.ups import UpsState

    report, status = ups_report(settings)
    if status is None:
        checks.fail("UPS", f"{report['error']} (start the UPS daemon, or fix UPS['address'])")
    elif status.state in (UpsState.UNKNOWN, UpsState.COMM_LOST):
        checks.fail("UPS", f"{settings.ups.daemon} answers but reports '{status.state.value}' ({status.raw or 'no status'}): "
                    "check the cable/driver between the daemon and the UPS")
    elif status.charge_pct is None or status.runtime_s is None:
        checks.fail("UPS", f"{status.state.value}, but no battery charge or runtime: hgs cannot budget an outage")
    else:
        checks.ok("UPS", f"{status.state.value}, {status.charge_pct:g} % charge, {status.runtime_s} s runtime "
                  f"({settings.ups.daemon} at {settings.ups.address})")
    return status


def check_hosts(settings, checks, log):
    from hgs.flows.inspect import inspect_site

    hints = {"host key": "never pin a key you have not compared with the host's console",
             "ssh": "check the host is up, the address/port, and that hgs's public key is in its authorized_keys",
             "xe missing": "is this a XenServer/XCP-ng host? set HOSTS[...]['xe_path']",
             "xe": "xapi is not answering: check the toolstack on the host (xe-toolstack-restart)",
             "timeout": "the host did not answer in time: check the network and the host"}
    results = inspect_site(settings.hosts, log, settings.timings.ssh_connect_timeout_s, settings.timings.xe_timeout_s,
                           settings.timings.ssh_connect_timeout_s + 3 * settings.timings.xe_timeout_s + 5)
    for host, result in zip(settings.hosts, results):
        name = f"host {host.name}"
        if not result["reachable"] or result["error"]:
            checks.fail(name, f"{result['error']}; {hints.get(result['error_kind'], '').format(name=host.name)}")
        else:
            role = "pool master" if result.get("master") else "pool member"
            checks.ok(name, f"SSH with the pinned key, xe answers; {role}, "
                      f"{'enabled' if result.get('enabled') else 'disabled'}, HA {'on' if result['ha_enabled'] else 'off'}; "
                      f"{result['vms_running']} VMs running on it, {result['vms_halted']} halted in the pool")
            if result["no_tools"]:
                checks.warn(name, f"guests without tools will be forced, not shut down cleanly: {', '.join(result['no_tools'])}")
        if not host.mac:
            checks.fail(f"{name} MAC", "no MAC configured: hgs cannot wake it after an outage; set HOSTS[...]['mac']")
        else:
            checks.ok(f"{name} MAC", f"{host.mac}, Wake-on-LAN to {host.wol_broadcast}:{host.wol_port}")
    return results


def check_names(settings, checks, log, results):
    """Resolves and keeps the host names now (see hgs.net.addresses); warns about a DNS server the
    outage may shut down."""
    from hgs.net import addresses

    for text in addresses.selftest_warnings(settings, log, results):
        checks.warn("host names", text)


def check_sendmail(settings, checks):
    path = settings.mail.sendmail_path
    if settings.mail.when == "never":
        checks.ok("mail", "MAIL['when'] is 'never': no mail is sent")
    elif not os.path.isfile(path) or not os.access(path, os.X_OK):
        checks.fail("mail", f"no sendmail at {path}: install an MTA (apt install postfix) or set MAIL['sendmail_path']")
    else:
        checks.ok("mail", f"{path} present; mail goes to {', '.join(settings.mail.to)}")


def check_plan(settings, checks, status, results):
    from hgs.flows import plan
    from hgs.flows.snapshot import VmRecord

    running = [vm for r in results if r.get("running") for vm in r["running"]]
    unique = {vm["uuid"]: vm for vm in running}
    masters = sum(1 for r in results if r.get("master"))
    members = sum(1 for r in results if r.get("master") is False)
    stages = (1 if members else 0) + (1 if masters or not results else 0)
    runtime = status.runtime_s if status else None
    # the three actions: shed VMs go down first (their own stage, before the main shutdown), the
    # others in the main shutdown, suspended or shut down
    actions = {vm["uuid"]: settings.vms.action(vm) for vm in unique.values()}
    counts = {a: sum(1 for v in actions.values() if v == a) for a in ("shutdown", "suspend", "shed")}
    groups = plan.build_groups([VmRecord.from_dict(u, vm) for u, vm in unique.items() if actions[u] != "shed"],
                               settings.vms)
    b = plan.budget(settings.timings, len(groups), stages, None, settings.ups.runtime_reserve_s)
    shed_s = settings.timings.vm_shutdown_timeout_s + settings.timings.vm_force_timeout_s if counts["shed"] else 0.0
    by_runtime = settings.timings.main_trigger == "runtime"
    worst = b.worst_case_s + (0.0 if by_runtime else shed_s)
    what = (f"{counts['shutdown']} VM(s) to shut down, {counts['suspend']} to suspend in {len(groups)} group(s)"
            + (f", {counts['shed']} shed first" if counts["shed"] else ""))
    when = (f"; the main shutdown starts when the runtime left falls to {b.worst_case_s:.0f} s + "
            f"{settings.ups.runtime_reserve_s:.0f} s reserve" if by_runtime else "")
    if runtime is None:
        checks.warn("plan", f"worst case {worst:.0f} s ({what}); the UPS runtime is unknown")
    elif runtime - settings.ups.runtime_reserve_s < worst:
        checks.fail("plan", f"the worst case ({worst:.0f} s: {what}) "
                    f"is longer than the UPS runtime {runtime} s minus the {settings.ups.runtime_reserve_s:.0f} s "
                    "reserve: deadlines would be shortened and more VMs forced; shorten TIMINGS or add battery")
    else:
        checks.ok("plan", f"worst case {worst:.0f} s ({what}); "
                  f"the UPS runtime {runtime} s covers it with the {settings.ups.runtime_reserve_s:.0f} s reserve{when}")


def check_hooks(ctx, settings, checks):
    """The hooks 'hgs install' put in place for the configured daemon: there, executable, calling
    this hgs with this config; for NUT, upssched.conf calls hgs's script before any AT line and
    upsmon's user may run the hooks' command lines through sudo."""
    from hgs.commands.install import hgs_program
    from hgs.setup import hooks
    from hgs.setup import install

    daemon = settings.ups.daemon
    entry = install.read_record(settings.paths.state_dir).get(daemon)
    name = f"{daemon} hooks"
    if not entry:
        checks.warn(name, f"none recorded for this config: the UPS daemon will not tell hgs of a power failure until "
                    f"you run 'hgs --config {os.path.abspath(ctx.config_path)} install {daemon}'")
        return
    this_hgs = os.path.realpath(hgs_program())
    config = os.path.abspath(ctx.config_path)
    problems = []
    hook_hgs = this_hgs
    for script in entry.get("scripts", []):
        try:
            with open(script, errors="replace") as handle:
                text = handle.read()
            mode = os.stat(script).st_mode
        except OSError as err:
            problems.append(f"{script} cannot be read ({err.strerror or err})")
            continue
        if hooks.MARKER not in text:
            problems.append(f"{script} is not hgs's any more")
            continue
        if not os.access(script, os.X_OK) or (entry.get("user", "root") != "root" and not mode & 0o001):
            problems.append(f"{script} is not executable by everyone (chmod 755 {script})")
        called = re.search(r'^HGS="([^"\n]*)"$', text, re.M)
        configured = re.search(r'^CONFIG="([^"\n]*)"$', text, re.M)
        if not called or os.path.realpath(called.group(1)) != this_hgs:
            problems.append(f"{script} calls {called.group(1) if called else 'no hgs'}, not this hgs ({this_hgs})")
        elif not os.access(called.group(1), os.X_OK):
            problems.append(f"{script} calls {called.group(1)}, which is not executable")
        else:
            hook_hgs = called.group(1)
        if not configured or configured.group(1) != config:
            problems.append(f"{script} uses the config {configured.group(1) if configured else '(none)'}, not {config}")
    if daemon == "nut":
        problems += _nut_wiring(entry, hook_hgs, config)
    if problems:
        checks.fail(name, "; ".join(problems) + f"; rerun 'hgs --config {config} install {daemon}"
                    + (" --write'" if daemon == "nut" else "'"))
    else:
        user = entry.get("user", "root")
        checks.ok(name, f"{', '.join(entry.get('scripts', []))} in place, calling this hgs with this config"
                  + (f"; {user} may run them through sudo" if user != "root" else ""))


def _nut_wiring(entry, hgs_path, config):
    """Returns the problems of the NUT side: upssched.conf's CMDSCRIPT, and sudo for upsmon's user."""
    import subprocess

    from hgs.setup import hooks
    from hgs.setup import install

    problems = []
    script = entry.get("scripts", [""])[0]
    nut_dir = entry.get("nut_dir", "/etc/nut")
    upsmon = _read_directives(os.path.join(nut_dir, "upsmon.conf"), problems)
    if upsmon is not None:
        notifycmd = install.last_directive(upsmon, "NOTIFYCMD")
        if not notifycmd or len(notifycmd) < 2 or "upssched" not in os.path.basename(notifycmd[1].split()[0]):
            problems.append(f"{nut_dir}/upsmon.conf does not run upssched as its NOTIFYCMD")
        flags = {words[1].upper(): words[2].upper().split("+") for key, words in upsmon
                 if key == "NOTIFYFLAG" and len(words) > 2}
        missing = [event for event in install.NUT_FLAGS if "EXEC" not in flags.get(event, [])]
        if missing:
            problems.append(f"{nut_dir}/upsmon.conf has no EXEC flag for {', '.join(missing)}: upssched never hears of it")
    upssched = os.path.join(nut_dir, "upssched.conf")
    lines = _read_directives(upssched, problems)
    if lines is not None:
        keys = [key for key, _ in lines]
        cmdscripts = [words[1] for key, words in lines if key == "CMDSCRIPT" and len(words) > 1]
        if not cmdscripts or cmdscripts[0] != script:
            problems.append(f"{upssched} does not run {script} (CMDSCRIPT {cmdscripts[0] if cmdscripts else 'missing'})")
        elif "AT" in keys and keys.index("AT") < keys.index("CMDSCRIPT"):
            problems.append(f"{upssched} has an AT line before CMDSCRIPT: upssched refuses the whole file")
    user = entry.get("user", "nut")
    if user != "root":
        sudo = shutil.which("sudo")
        if not sudo:
            problems.append(f"sudo is not installed: upsmon runs the hooks as {user}, who reaches hgs through sudo "
                            "(apt install sudo)")
            return problems
        for argv in {tuple(a) for a in hooks.NUT_COMMANDS.values()}:
            command = hooks.sudo_argv(hgs_path, config, argv)
            try:
                allowed = subprocess.run([sudo, "-n", "-l", "-U", user, *command], capture_output=True,
                                         timeout=10).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                allowed = False
            if not allowed:
                problems.append(f"{user} (upsmon's user) may not run '{' '.join(command)}' through sudo")
    return problems


def _read_directives(path, problems):
    from hgs.setup import install

    try:
        with open(path, errors="replace") as handle:
            return install.parse_directives(handle.read().splitlines())
    except OSError as err:
        problems.append(f"{path} cannot be read ({err.strerror or err})")
        return None


def check_nut_secondary(ctx, settings, checks):
    """On a NUT secondary, the primary waits HOSTSYNC seconds for this box to log off before it
    cuts the power: shorter than doshutdown_bound_s, the UPS may cut hgs's forced shutdown off."""
    from hgs.setup import install

    if settings.ups.daemon != "nut":
        return
    entry = install.read_record(settings.paths.state_dir).get("nut") or {}
    path = os.path.join(entry.get("nut_dir") or ctx.args.nut_dir, "upsmon.conf")
    try:
        with open(path, errors="replace") as handle:
            directives = install.parse_directives(handle.read().splitlines())
    except OSError:
        return  # not readable here: nothing to say
    found = install.monitor_name(directives, settings.ups.ups_name, settings.ups.host, settings.ups.port)
    if found is None or found[1] not in ("secondary", "slave"):
        return
    hostsync = install.last_directive(directives, "HOSTSYNC")
    try:
        hostsync_s = float(hostsync[1]) if hostsync and len(hostsync) > 1 else 15.0
    except ValueError:
        hostsync_s = 15.0
    bound_s = settings.timings.doshutdown_bound_s
    if hostsync_s < bound_s:
        checks.fail("NUT secondary", f"this box is a secondary of {found[0]}: the primary waits HOSTSYNC "
                    f"({hostsync_s:g} s in {path}) for it to log off, less than TIMINGS['doshutdown_bound_s'] "
                    f"({bound_s:g} s): the UPS may cut the power in the middle of the forced shutdown; set HOSTSYNC "
                    f"to at least {bound_s + 5:g} on the primary (and here), or lower doshutdown_bound_s")
    else:
        checks.ok("NUT secondary", f"HOSTSYNC {hostsync_s:g} s covers doshutdown_bound_s {bound_s:g} s")


def check_state(ctx, settings, checks, status):
    from hgs.box import history
    from hgs.box.state import IDLE, StateFile
    from hgs.errors import StateError

    try:
        state = StateFile(settings.paths.state_dir).read()
    except StateError as err:  # it says what to do
        checks.fail("state", str(err))
        state = None
    if state is not None:
        if state.phase == IDLE:
            checks.ok("state", "idle: nothing is down because of hgs")
        elif status is not None and status.on_mains:
            how, run_id = detach(ctx, "offbattery")
            checks.warn("state", f"the site was left down by hgs ({state.phase}) and the mains are present: "
                        f"restore started (run {run_id}, {how}); see the log")
        else:
            checks.warn("state", f"phase {state.phase}: the site is down by hgs and the UPS is not on line")
    runs = history.recent(settings.paths.state_dir, 1)
    if not runs:
        checks.ok("last run", "no flow has run yet")
    elif runs[0].failed:
        checks.fail("last run", f"run {runs[0].id} ({runs[0].command}) ended '{runs[0].result}' with failures; "
                    "see the log and its mail")
    else:
        checks.ok("last run", f"run {runs[0].id} ({runs[0].command}): {runs[0].result}")


def run(ctx):
    from hgs.errors import MailError
    from hgs.net import mail as mailmod

    settings = ctx.settings  # a broken config stops here with exit 2 and every problem listed
    run_log = ctx.start_log()
    log = run_log.logger
    checks = Checks(log)
    checks.ok("config", f"{settings.source} is valid ({len(settings.hosts)} host(s))")
    status = check_ups(settings, checks)
    results = check_hosts(settings, checks, log)
    check_names(settings, checks, log, results)
    check_sendmail(settings, checks)
    check_plan(settings, checks, status, results)
    check_hooks(ctx, settings, checks)
    check_nut_secondary(ctx, settings, checks)
    check_state(ctx, settings, checks, status)
    verdict = "FAILED" if checks.failed else "all well"
    if checks.failed or ctx.verbose or ctx.stdout.isatty():  # cron mails any output: none when all is well
        for line in checks.lines():
            ctx.out(line)
        ctx.out(f"selftest: {verdict}")
    log.info("selftest: %s", verdict)
    if ctx.args.mail == "always" or (ctx.args.mail == "failure" and checks.failed):
        body = "\n".join(checks.lines() + ["", f"selftest: {verdict}", "", "Full log:", "", run_log.text()])
        try:
            mailmod.send(settings.mail, f"selftest {verdict} (run {run_log.run_id}, "
                         f"{time.strftime('%Y-%m-%d %H:%M')})", body)
        except MailError as err:
            log.error("the selftest mail could not be sent: %s", err)
    return 1 if checks.failed else 0
