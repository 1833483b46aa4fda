"""xapi's error codes in hgs's words: the ONE table from xe's refusals to ``hgs.flows.ports.Kind``.

The flows act on kinds, never on codes; a code not in this table is FAILED, and a text xe
printed that ``xe.classify`` could not recognise at all ("OTHER") is ``unexpected``.
"""

from hgs.flows.ports import HALTED, RUNNING, SUSPENDED, Kind, Outcome

KINDS = {
    "VM_LACKS_FEATURE": Kind.NO_TOOLS,  # no guest tools: a clean shutdown cannot work
    "VM_MISSING_PV_DRIVERS": Kind.NO_TOOLS,
    "NO_MATCHING_VMS": Kind.GONE,
    "UUID_INVALID": Kind.GONE,
    "OTHER_OPERATION_IN_PROGRESS": Kind.BUSY,
    "HOST_STILL_BOOTING": Kind.BOOTING,
    "HOST_NOT_DISABLED": Kind.NOT_DISABLED,
}


def kind_of(error):
    """Given an XeError, returns (kind, state): state is the power state a VM_BAD_POWER_STATE
    found (xapi names it in 'actual'), else None."""
    if error.code == "VM_BAD_POWER_STATE":
        actual = error.params.get("actual")
        if actual == SUSPENDED:
            return Kind.SUSPENDED, actual
        if actual in (HALTED, RUNNING):
            return Kind.ALREADY, actual
        return Kind.FAILED, actual
    return KINDS.get(error.code, Kind.FAILED), None


def outcome(vm_uuid, status, error):
    """Given one batch call's exit status and its XeError (None when it printed nothing),
    returns its Outcome."""
    if status == 0:
        return Outcome(vm_uuid, Kind.DONE)
    if error is None:
        return Outcome(vm_uuid, Kind.FAILED, message=f"exit status {status}", unexpected=True)
    kind, state = kind_of(error)
    return Outcome(vm_uuid, kind, state, error.summary, unexpected=error.code == "OTHER")
