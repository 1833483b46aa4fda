"""Files that decide trust: the SSH key, hgs's known_hosts, the config, and their folders.

Another user able to write one of them (or to read the key) is refused, each refusal naming the
command that fixes it; the config run is the very file that was checked.
"""

import os
import subprocess
import sys
import time

import pytest

from hgs import config
from hgs.box import permissions
from hgs.errors import ConfigError
from hgs.net.ssh import Connection, UnsafeTrustFile
from harness import run_hgs, write

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="hgs runs as root; the ownership rules are root's")

fault = pytest.mark.fault


def folder(path, mode):
    path.mkdir()
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode,private,refused,fix", [
    (0o600, True, False, None),
    (0o400, True, False, None),
    (0o640, True, True, "chmod 600"),
    (0o644, True, True, "chmod 600"),
    (0o604, True, True, "chmod 600"),
    (0o644, False, False, None),
    (0o664, False, True, "chmod go-w"),
    (0o646, False, True, "chmod go-w"),
])
def test_file_modes(tmp_path, mode, private, refused, fix):
    path = write(tmp_path / "file", "x\n", mode)
    if not refused:
        os.close(permissions.open_checked(path, "the file", private=private))
        return
    with pytest.raises(permissions.UnsafeFile) as caught:
        permissions.open_checked(path, "the file", private=private)
    assert f"run '{fix} {path}'" in str(caught.value)


@pytest.mark.parametrize("mode,refused", [(0o700, False), (0o755, False), (0o775, True), (0o777, True),
                                          (0o1777, True), (0o757, True)])
def test_the_files_own_folder_may_be_written_by_its_owner_alone(tmp_path, mode, refused):
    place = folder(tmp_path / "etc-hgs", mode)
    path = write(place / "known_hosts", "x\n", 0o600)
    if not refused:
        os.close(permissions.open_checked(path, "known_hosts"))
        return
    with pytest.raises(permissions.UnsafeFile) as caught:
        permissions.open_checked(path, "known_hosts")
    assert f"run 'chmod go-w {place}'" in str(caught.value)


def test_a_shared_folder_further_up_needs_the_sticky_bit(tmp_path):
    shared = folder(tmp_path / "shared", 0o1777)  # like /tmp
    mine = folder(shared / "hgs", 0o700)
    os.close(permissions.open_checked(write(mine / "key", "k", 0o600), "the SSH key", private=True))
    shared.chmod(0o777)  # anyone may rename 'hgs' away and put their own folder there
    with pytest.raises(permissions.UnsafeFile) as caught:
        permissions.open_checked(mine / "key", "the SSH key", private=True)
    assert f"run 'chmod go-w {shared}'" in str(caught.value)


def test_a_file_owned_by_another_user_is_refused(tmp_path):
    path = write(tmp_path / "known_hosts", "x\n", 0o600)
    os.chown(path, 1234, 0)
    with pytest.raises(permissions.UnsafeFile) as caught:
        permissions.open_checked(path, "hgs's known_hosts")
    assert f"run 'chown root {path}'" in str(caught.value)


def connection(lab):
    host = config.load(lab.config).hosts[0]
    return Connection(host, 5.0), host


@pytest.mark.parametrize("which,mode,fix", [("key", 0o644, "chmod 600"), ("key", 0o640, "chmod 600"),
                                            ("known_hosts", 0o666, "chmod go-w"),
                                            ("folder", 0o777, "chmod go-w")])
def test_ssh_refuses_an_open_key_or_known_hosts_and_says_what_to_run(site_lab, which, mode, fix):
    lab = site_lab({"hosts": [{"name": "xen1", "mac": "02:00:00:00:0a:01"}], "vms": [{"name": "one"}]})
    path = {"key": lab.site.key_file, "known_hosts": lab.site.known_hosts, "folder": lab.site.key_file.parent}[which]
    conn, _ = connection(lab)
    assert conn.run("true", 10).ok  # the lab as built connects
    conn.close()
    before = os.stat(path).st_mode
    path.chmod(mode)
    try:
        conn, _ = connection(lab)
        with pytest.raises(UnsafeTrustFile) as caught:
            conn.connect()
        assert f"run '{fix} {path}'" in str(caught.value) and "refusing to connect" in str(caught.value)
    finally:
        path.chmod(before)
    conn, _ = connection(lab)
    assert conn.run("true", 10).ok
    conn.close()


@fault('an SSH key readable by others (also: known_hosts or its folder writable by others)',
       "no connection; the error says 'chmod 600 <key>' ('chmod go-w ...')")
def test_hgs_status_names_the_fix_for_an_open_key(site_lab):
    lab = site_lab({"hosts": [{"name": "xen1", "mac": "02:00:00:00:0a:02"}], "vms": [{"name": "one"}]})
    lab.site.key_file.chmod(0o644)
    result = lab.hgs("status")
    assert f"chmod 600 {lab.site.key_file}" in result.stdout + result.stderr, result.stdout + result.stderr


@fault('the config in a folder others can write',
       "refused with 'chmod go-w <folder>'")
def test_a_config_in_a_folder_others_can_write_is_refused(tmp_path):
    place = folder(tmp_path / "etc-hgs", 0o777)
    path = write(place / "config.py", "UPS = {'daemon': 'apcupsd', 'address': '127.0.0.1'}\n"
                                      "HOSTS = [{'name': 'x', 'address': '127.0.0.1'}]\n", 0o600)
    result = run_hgs("check-config", "--config", str(path))
    assert result.returncode == 2 and f"chmod go-w {place}" in result.stderr, result.stderr


SWAPPER = """
import os, sys
link, safe, evil = sys.argv[1:4]
tmp = link + ".tmp"
while True:
    for target in (safe, evil):
        os.symlink(target, tmp)
        os.replace(tmp, link)
"""


@fault('the config path swapped between a safe file and a world-writable one while hgs loads it',
       'the file run is the file checked: refused or the safe one, never the other')
def test_the_config_run_is_the_file_that_was_checked(tmp_path):
    """The config path flips between a safe file and a world-writable one: every load either
    refuses or runs the safe one, never the world-writable file that passed a check by path."""
    body = "UPS = {{'daemon': 'apcupsd', 'address': '127.0.0.1'}}\nHOSTS = [{{'name': {!r}, 'address': '127.0.0.1'}}]\n"
    safe = write(tmp_path / "safe.py", body.format("safe"), 0o600)
    evil = write(tmp_path / "evil.py", body.format("evil"), 0o666)
    link = tmp_path / "config.py"
    os.symlink(safe, link)
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(link), str(safe), str(evil)])
    loaded, refused = [], 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                loaded.append(config.load(link, check_owner=True).hosts[0].name)
            except ConfigError:
                refused += 1
    finally:
        swapper.terminate()
        swapper.wait(5)
    assert refused and loaded  # both files were met
    assert set(loaded) == {"safe"}, f"{loaded.count('evil')} of {len(loaded)} loads ran the world-writable file"
