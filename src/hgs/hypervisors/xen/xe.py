"""The xe vocabulary hgs uses: commands as data, output parsers, error classification.

Pure functions, no I/O. Commands are argv tuples built only from validated uuids and fixed
words; names from the hypervisor never go into a command. Output is parsed defensively: a
VM name may contain anything (quotes, ';', newlines, whole forged records), so record parsing
keeps the first occurrence of each key, lists ask for the name last, and ``Hypervisor.vms``
checks every record against a --minimal list of the same selection (see ``forged``).
"""

import base64
import re
from dataclasses import dataclass

from hgs.errors import BadUuid

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RESULT_TAG = "hgs-result"


def check_uuid(value):
    """Returns ``value`` if it is a lowercase uuid; raises BadUuid otherwise."""
    if not isinstance(value, str) or not UUID.match(value):
        raise BadUuid(f"not a uuid: {value!r:.80}")
    return value


# -- commands ------------------------------------------------------------------------------

VM_PARAMS = "uuid,power-state,resident-on,order,start-delay,PV-drivers-detected,name-label"  # name last


def vm_list_running():
    return ("vm-list", "power-state=running", "is-control-domain=false", f"params={VM_PARAMS}")


def vm_list_all():
    return ("vm-list", "is-control-domain=false", f"params={VM_PARAMS}")


def vm_uuids(running_only=False):
    """The uuids of the same selection as vm_list_running() (or vm_list_all()): no free text."""
    return ("vm-list",) + (("power-state=running",) if running_only else ()) + ("is-control-domain=false", "--minimal")


def vm_networks():
    """The addresses the guests' tools report (to see whether a VM serves the site's DNS)."""
    return ("vm-list", "power-state=running", "is-control-domain=false", "params=uuid,networks")


def vm_param_get(vm_uuid, param):
    """One field of one VM: the output is the value alone, so no other VM's text can reach it."""
    if param not in VM_PARAMS.split(","):
        raise ValueError(f"not a VM field hgs reads: {param!r}")
    return ("vm-param-get", f"uuid={check_uuid(vm_uuid)}", f"param-name={param}")


def vm_power_states():
    return ("vm-list", "is-control-domain=false", "params=uuid,power-state")


def vm_shutdown(vm_uuid, force=False):
    return ("vm-shutdown", f"uuid={check_uuid(vm_uuid)}") + (("--force",) if force else ())


def vm_reset_powerstate(vm_uuid):
    return ("vm-reset-powerstate", f"uuid={check_uuid(vm_uuid)}", "--force")


def vm_suspend(vm_uuid):
    """Memory to the pool's suspend SR, the VM to 'suspended' (xen-api ocaml/xapi/xapi_vm.ml, suspend)."""
    return ("vm-suspend", f"uuid={check_uuid(vm_uuid)}")


def vm_resume(vm_uuid):
    return ("vm-resume", f"uuid={check_uuid(vm_uuid)}")


def vm_start(vm_uuid, on=None):
    return ("vm-start", f"uuid={check_uuid(vm_uuid)}") + ((f"on={check_uuid(on)}",) if on else ())


def host_list():
    return ("host-list", "params=uuid,address,enabled,name-label")


def pool_list():
    return ("pool-list", "params=uuid,master,ha-enabled")


def host_disable(host_uuid):
    return ("host-disable", f"uuid={check_uuid(host_uuid)}")


def host_enable(host_uuid):
    return ("host-enable", f"uuid={check_uuid(host_uuid)}")


def host_shutdown(host_uuid):
    return ("host-shutdown", f"uuid={check_uuid(host_uuid)}")


def pool_ha_disable():
    return ("pool-ha-disable",)


def pool_ha_enable(sr_uuids):
    """Without SRs, xapi picks a statefile SR itself (xen-api ocaml/xapi/xapi_ha.ml, enable)."""
    if not sr_uuids:
        return ("pool-ha-enable",)
    return ("pool-ha-enable", "heartbeat-sr-uuids=" + ",".join(check_uuid(u) for u in sr_uuids))


def pool_ha_statefiles(pool_uuid):
    return ("pool-param-get", f"uuid={check_uuid(pool_uuid)}", "param-name=ha-statefiles")


def vdi_sr(vdi_uuid):
    return ("vdi-param-get", f"uuid={check_uuid(vdi_uuid)}", "param-name=sr-uuid")


# -- output parsing ------------------------------------------------------------------------

_FIELD = re.compile(r"^\s*([A-Za-z][A-Za-z0-9:_-]*) \((?: RO| RW|MRO|MRW|SRO|SRW)\)\s*: ?(.*)$")


def parse_records(text):
    """Given xe's record output, returns a list of {key: value} (first occurrence wins).

    Lines that are not 'key ( RO): value' continue the previous value (a name with a
    newline); a line 'uuid ( RO): ...' after a blank line starts a new record.
    """
    records, current, last_key, blank = [], None, None, True
    for line in text.split("\n"):
        if not line.strip():
            blank = True
            continue
        match = _FIELD.match(line)
        if match and (current is None or (blank and match.group(1) == "uuid")):
            current = {}
            records.append(current)
        if match and match.group(1) not in current:
            last_key = match.group(1)
            current[last_key] = match.group(2)
        elif current is not None and last_key is not None and not match:
            current[last_key] += "\n" + line
        blank = False
    return records


def forged(records, known):
    """Given parsed records and the uuids the same selection listed with --minimal, returns
    (reread, rename): the uuids whose records cannot be trusted at all, and those whose NAME
    cannot be trusted.

    A name is printed last and may contain 'uuid ( RO): <another VM>' lines: xe's text alone
    cannot tell such a forged record from a real one. Two records claiming one uuid, or a record
    for a uuid outside the selection, prove a forgery. The forged text is the tail of the name
    of the record just before it (a forged chain leads back to the first record that is not
    forged), so that record keeps its other fields (printed before its name) but not its name.
    """
    claims = {}
    for record in records:
        claims[record.get("uuid", "")] = claims.get(record.get("uuid", ""), 0) + 1
    reread = {u for u, count in claims.items() if count > 1 and u in known}
    rename = set()
    for index, record in enumerate(records):
        vm_uuid = record.get("uuid", "")
        if (claims[vm_uuid] > 1 or vm_uuid not in known) and index > 0:
            before = records[index - 1].get("uuid", "")
            if before in known and before not in reread:
                rename.add(before)
    return reread, rename


def param_value(text):
    """Given vm-param-get output, returns the value (xe ends it with one newline)."""
    return text[:-1] if text.endswith("\n") else text


def parse_minimal(text):
    """Given --minimal output ('a,b\\,c'), returns the list of values (escapes undone)."""
    text = text.rstrip("\n")
    if not text:
        return []
    values, current, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if c == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    values.append("".join(current))
    return values


# -- errors --------------------------------------------------------------------------------

# xe prints xapi's description, not the code: hgs recognises the codes it acts on by a
# distinctive part of each description.
DESCRIPTIONS = {
    "VM_BAD_POWER_STATE": "not in an appropriate power state",
    "VM_LACKS_FEATURE": "which lacks the feature",
    "VM_MISSING_PV_DRIVERS": "requires PV drivers to be installed",
    "VM_FAILED_SHUTDOWN_ACKNOWLEDGMENT": "didn't acknowledge the need to shutdown",
    "VM_SHUTDOWN_TIMEOUT": "failed to shutdown before the timeout expired",
    "HOST_NOT_DISABLED": "because the host is not disabled",
    "HOST_STILL_BOOTING": "toolstack is still initialising",
    "CANNOT_CONTACT_HOST": "Cannot forward messages because the host cannot be contacted",
    "HOST_OFFLINE": "involves a host which could not be contacted",
    "HOST_IN_EMERGENCY_MODE": "host is running in emergency mode",
    "OTHER_OPERATION_IN_PROGRESS": "Another operation involving the object is currently in progress",
    "NO_MATCHING_VMS": "No matching VMs found",
    "UUID_INVALID": "The uuid you supplied was invalid",
    "NO_HOSTS_AVAILABLE": "no hosts available to complete",
    "HOST_DISABLED": "The specified host is disabled",
    # a vm-suspend that cannot be done (ocaml/idl/datamodel_errors.ml wording; see hgs.sim.xe)
    "VM_NO_SUSPEND_SR": "does not have a suspend SR specified",
    "VM_LACKS_FEATURE_SUSPEND": "needs the VM cooperative suspend feature",
    "SR_BACKEND_FAILURE_44": "insufficient space",
}


@dataclass(frozen=True)
class XeError:
    code: str  # one of DESCRIPTIONS, or "OTHER"
    params: dict
    text: str

    @property
    def summary(self):
        first = self.text.strip().splitlines()[0] if self.text.strip() else "(no message)"
        return self.code if self.code != "OTHER" else first[:120]


def classify(stderr):
    """Given xe's stderr, returns XeError(code, {param: value}, text)."""
    code = next((c for c, part in DESCRIPTIONS.items() if part in stderr), "OTHER")
    params = {}
    for line in stderr.splitlines()[1:]:
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[a-z_-]+", key) and key not in params:
            params[key] = value
    return XeError(code, params, stderr)


# -- batches: many xe calls in parallel in ONE channel -------------------------------------

def batch_script(xe_path, commands):
    """Given the xe path and [(uuid, argv)], returns a sh script running them in parallel.

    Each prints one line 'hgs-result UUID STATUS BASE64(STDERR)' when it ends. Only hgs's own
    words and validated uuids appear in the script, each shell-quoted.
    """
    import shlex

    xe = shlex.quote(xe_path)
    parts = []
    for vm_uuid, argv in commands:
        check_uuid(vm_uuid)
        call = " ".join([xe] + [shlex.quote(a) for a in argv])
        # the error text only when there is one: base64 and tr cost two processes per VM on dom0
        parts.append(f"( e=$({call} 2>&1 >/dev/null); s=$?; if [ -z \"$e\" ]; then "
                     f"printf '{RESULT_TAG} %s %s\\n' {vm_uuid} \"$s\"; else "
                     f"printf '{RESULT_TAG} %s %s %s\\n' {vm_uuid} \"$s\" \"$(printf %s \"$e\" | base64 | tr -d '\\n')\"; "
                     "fi ) &")
    return "\n".join(parts + ["wait"])


def parse_result_line(line):
    """Given a batch output line, returns (uuid, status, stderr text) or None."""
    parts = line.strip().split(" ")
    if len(parts) not in (3, 4) or parts[0] != RESULT_TAG or not UUID.match(parts[1]) or not parts[2].isdigit():
        return None
    try:
        err = base64.b64decode(parts[3]).decode("utf-8", "replace") if len(parts) == 4 else ""
    except ValueError:
        err = "(unreadable error text)"
    return parts[1], int(parts[2]), err
