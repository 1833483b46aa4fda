# hgs configuration
#
# Copy this file to /etc/hgs/config.py, edit it, and check it with:
#
#     hgs check-config
#
# It is a Python module: hgs runs it and reads the UPPERCASE names below. Every setting
# has a default except UPS and HOSTS. A misspelt name is an error ("did you mean ..."), so
# helper variables of your own must start with an underscore (_subnet = "192.168.1").
# Relative paths are taken from the folder that holds this file.
#
# When hgs runs as root (it does, from apcupsd or NUT), this file must be owned by root
# and not writable by group or others:  chown root /etc/hgs/config.py; chmod 600 /etc/hgs/config.py

# --- The UPS daemon hgs asks for the power state -------------------------------------
UPS = {
    # "apcupsd": its Network Information Server (NIS, apcupsd.conf NETSERVER on, port 3551).
    # "nut":     upsd (port 3493); the address is then "upsname@host:port".
    "daemon": "apcupsd",
    "address": "127.0.0.1:3551",        # NUT example: "myups@127.0.0.1:3493"
    # "user": "monuser",                # NUT only, optional (upsd.users)
    # "password": "secret",             # NUT only; never shown or logged
    "timeout_s": 5,                     # one deadline for a whole status read
    "poll_interval_s": 2,               # how often the UPS is polled while confirming
    "runtime_reserve_s": 120,           # battery runtime hgs never plans to use
    "restore_min_charge_pct": 0,        # restore only once the battery holds this much
    # The UPS daemon stops answering while an outage is being confirmed:
    #   "not_an_outage": lost contact is not a confirmed outage: nothing is shut down (default);
    #   "outage": after an onbattery event from the daemon, lost contact counts as on battery.
    "lost_contact": "not_an_outage",
}

# --- The XenServer / XCP-ng hosts ----------------------------------------------------
# One entry per host. For a pool, list the master and every member; hgs asks xe which
# one is the master and shuts the members down first.
HOSTS = [
    {
        "name": "xen1",                             # how hgs names it in logs and mails
        "address": "192.168.1.10",                  # IP or host name, for SSH and ping
        "ssh_port": 22,
        "ssh_user": "root",
        "ssh_key_file": "/etc/hgs/id_ed25519",      # ssh-keygen -t ed25519 -f /etc/hgs/id_ed25519
        # "ssh_key_passphrase": "...",              # if the key has one; never shown or logged
        "known_hosts_file": "/etc/hgs/known_hosts", # filled by 'hgs trust xen1'
        "mac": "aa:bb:cc:dd:ee:01",                 # for Wake-on-LAN after the outage
        "wol_broadcast": "192.168.1.255",           # the broadcast address of the host's network
        "wol_port": 9,
        "down_check": "ping+ssh",                   # "ping+ssh" (both silent), "ping" or "ssh"
        "xe_path": "/opt/xensource/bin/xe",
    },
]

# --- Which VMs, in which order -------------------------------------------------------
VMS = {
    # VMs hgs never touches (names or uuids): not shut down, not started.
    "leave_alone": [],
    # VMs shut down after all the others (storage, the router VM): names or uuids.
    "stop_last": [],
    # Explicit shutdown groups, stopped one group after the other, in parallel within a
    # group. VMs not named in any group go first, grouped by their xe 'order' (highest
    # first); "stop_last" VMs go after everything.  Example: [["web1", "web2"], ["db1"]]
    "groups": [],
}

# --- Timings (all in seconds) ------------------------------------------------------
TIMINGS = {
    "confirm_outage_s": 30,         # the power must stay off this long before anything is shut down
    "vm_shutdown_timeout_s": 180,   # clean shutdown deadline per VM; past it the VM is forced
    "vm_force_timeout_s": 60,       # deadline for a forced shutdown (then vm-reset-powerstate)
    "xe_timeout_s": 30,             # deadline for a quick xe call (lists, host-disable, ...)
    "ssh_connect_timeout_s": 10,
    "host_shutdown_timeout_s": 300, # how long a host may take to go quiet after host-shutdown
    "host_down_confirm_s": 10,      # how long a host must stay silent to count as down
    "doshutdown_bound_s": 40,       # 'hgs doshutdown' returns within this, so this box can halt
    "restore_confirm_s": 120,       # the power must be back this long before the restore starts
    "host_boot_timeout_s": 600,     # how long a woken host may take to answer ping
    "wol_resend_interval_s": 30,    # Wake-on-LAN is sent again this often while waiting
    "xapi_ready_timeout_s": 300,    # how long xapi may say HOST_STILL_BOOTING
    "vm_start_timeout_s": 180,      # deadline per vm-start
    "verify_timeout_s": 300,        # every VM of the snapshot must be running within this
    "charge_wait_s": 3600,          # how long to wait for UPS["restore_min_charge_pct"] before restoring
    "unreachable_retry_s": 120,     # a host that does not answer when the outage starts is retried this long
    "members_wake": "after_master_ping",  # restore: wake pool members once the master answers ping
                                    # ("together": with the master; "after_master_xapi": once its xapi answers)
}

# --- Mail through the local sendmail (Postfix) ---------------------------------------
MAIL = {
    "to": ["root"],                 # list of addresses
    "from": "root",
    "sendmail_path": "/usr/sbin/sendmail",
    "subject_tag": "[hgs]",
    "when": "always",               # "always", "failure" or "never"
    "timeout_s": 30,
}

# --- Notices as things happen (ntfy, Slack, Matrix, a pager...) ------------------------
# Like NUT's NOTIFYCMD: a program hgs runs on each event, with the event and a one-line
# summary in its environment (HGS_EVENT, HGS_SUMMARY, HGS_SEVERITY, HGS_RUN_ID, HGS_HOST,
# HGS_TIME, HGS_CONFIG). It runs beside the flow, never holding it up, and is killed past
# timeout_s. No shell runs it: give a script for pipes. Recipes (ntfy, apprise): README.md.
NOTIFY = {
    "command": None,                # e.g. "/etc/hgs/notify.sh" or ["/usr/local/bin/apprise", "-b", "..."]
    "timeout_s": 10,                # the program is killed past this
    # which events run it: power_lost (at once: "power lost, confirming"), outage_confirmed,
    # site_down, power_back, site_restored, failure
    "events": ["power_lost", "outage_confirmed", "site_down", "power_back", "site_restored", "failure"],
    "mail_events": [],              # events also mailed at once, e.g. ["power_lost"] as Debian's apcupsd does
}

# --- Metrics for Prometheus (node_exporter's textfile collector) ---------------------
METRICS = {
    # written atomically at the end of each run; None: not written ('hgs status --prometheus' works anyway)
    "textfile": None,               # e.g. "/var/lib/node_exporter/textfile_collector/hgs.prom"
}

# --- Where hgs keeps its files -------------------------------------------------------
PATHS = {
    "state_dir": "/var/lib/hgs",        # the snapshot of running VMs and the run history
    "log_file": "/var/log/hgs/hgs.log",
    "lock_dir": "/run/hgs",             # one flow at a time
}

LOGGING = {
    "syslog": True,                     # also log to syslog (when /dev/log exists)
    "syslog_address": "/dev/log",
}
