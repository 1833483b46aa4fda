"""Files that decide what hgs trusts: opened once, checked on the open file, read from it.

The config (code run as root), the SSH key (who hgs is) and hgs's known_hosts (whom hgs
believes) must be writable by their owner alone, and the key readable by its owner alone.
Each is opened first and checked with fstat on that descriptor, then read through the same
descriptor: a check by path followed by a second open by path could be fooled by a swap in
between. Their folders must not be writable by others either (a writable folder lets anyone
replace the file). Every refusal names the command that fixes it.
"""

import os
import stat

from hgs.errors import UnsafeFile


def open_checked(path, what, private=False, owners=None):
    """Opens ``path`` read-only and returns the descriptor, once the open file and its folders
    passed the checks; ``private`` also refuses any access by group or others (a key).

    ``owners`` are the uids allowed to own them (default root and this process's user). Raises
    UnsafeFile listing every problem with the command to run, FileNotFoundError, OSError.
    """
    owners = {0, os.geteuid()} if owners is None else set(owners)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        problems = file_problems(path, os.fstat(fd), what, private, owners)
        problems += folder_problems(os.path.realpath(path), owners)
        if problems:
            raise UnsafeFile("; ".join(problems))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_checked(path, what, private=False, owners=None):
    """Returns the bytes of ``path`` read through the descriptor that passed ``open_checked``."""
    fd = open_checked(path, what, private, owners)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def fd_path(fd):
    """Returns a path naming the open file ``fd`` itself (for a library that wants a path): the
    same file that was checked, even if the name was swapped since."""
    return f"/proc/self/fd/{fd}"


def file_problems(path, info, what, private, owners):
    """Given the fstat of an open file, returns what is wrong with it (list of sentences)."""
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return [f"{what} {path} is not a regular file"]
    problems = []
    if info.st_uid not in owners:
        problems.append(f"{what} {path} is owned by uid {info.st_uid}, not root: run 'chown root {path}'")
    if private and mode & 0o077:
        problems.append(f"{what} {path} is open to other users (mode {mode:04o}): run 'chmod 600 {path}'")
    elif mode & 0o022:
        problems.append(f"{what} {path} is writable by group or others (mode {mode:04o}): run 'chmod go-w {path}'")
    return problems


def folder_problems(real_path, owners):
    """Given a file's real path, returns what is wrong with the folders above it: the file's own
    folder may be written by its owner alone; a folder further up may be shared only with the
    sticky bit (like /tmp), where others cannot rename what is not theirs."""
    problems = []
    folder = os.path.dirname(real_path)
    first = True
    while True:
        try:
            info = os.stat(folder)
        except OSError as err:
            problems.append(f"the folder {folder} cannot be checked ({err.strerror})")
            break
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in owners:
            problems.append(f"the folder {folder} is owned by uid {info.st_uid}, not root: run 'chown root {folder}'")
        if mode & 0o022 and (first or not mode & stat.S_ISVTX):
            problems.append(f"the folder {folder} is writable by group or others (mode {mode:04o}): "
                            f"run 'chmod go-w {folder}'")
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder, first = parent, False
    return problems
