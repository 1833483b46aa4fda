"""The simulated host's `xe`: a small client of the simulator server (hgs.sim.server).

``write_xe_wrapper`` puts an `xe` in a host's bin folder: the C client below, compiled once
with the C compiler when there is one (a call then costs well under a millisecond of CPU
here), or else a shell line running this file as a script with ``python -I -S`` (no site,
no environment: only the standard library). Both send the host name and the arguments to
the site's socket, print the answer's stdout and stderr, and exit with its status.

Run as a script: ``python -I -S xeclient.py SOCKET HOST XE-ARGS...``.
"""

import os
import socket
import sys

C_SOURCE = r"""
/* The simulated host's xe: sends HOST and the arguments to the simulator server, prints
   its answer. The socket path and the host name are in the file named like this program
   plus ".conf" (two lines). Written for hgs's test site; see hgs/sim/xeclient.py. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void fail(const char *message) {
    if (write(2, message, strlen(message)) < 0) _exit(1);
    _exit(1);
}

static void write_all(int fd, const char *data, size_t count) {
    while (count) {
        ssize_t done = write(fd, data, count);
        if (done < 0) {
            if (errno == EINTR) continue;
            _exit(1);
        }
        data += done;
        count -= (size_t)done;
    }
}

int main(int argc, char **argv) {
    char path[4096], conf[8192];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 8);
    if (n < 0) fail("xe: cannot find its own path\n");
    memcpy(path + n, ".conf", 6);
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("xe: no .conf beside the client\n");
    n = read(fd, conf, sizeof conf - 1);
    close(fd);
    if (n <= 0) fail("xe: empty .conf\n");
    conf[n] = 0;
    char *host = strchr(conf, '\n');
    if (!host) fail("xe: bad .conf\n");
    *host++ = 0;
    char *end = strchr(host, '\n');
    if (end) *end = 0;

    size_t length = strlen(host) + 1;
    for (int i = 1; i < argc; i++) length += strlen(argv[i]) + 1;
    char *request = malloc(length + 32);
    if (!request) fail("xe: out of memory\n");
    int head = snprintf(request, 32, "X%zu\n", length);
    char *p = request + head;
    size_t part = strlen(host) + 1;
    memcpy(p, host, part);
    p += part;
    for (int i = 1; i < argc; i++) {
        part = strlen(argv[i]) + 1;
        memcpy(p, argv[i], part);
        p += part;
    }

    int sock = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    strncpy(address.sun_path, conf, sizeof address.sun_path - 1);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) < 0)
        fail("Error: Connection refused (calling connect )\n");
    write_all(sock, request, (size_t)head + length);

    static char buffer[65536];
    size_t have = 0;
    char *newline;
    while (!(newline = memchr(buffer, '\n', have))) {
        if (have == sizeof buffer) fail("xe: bad answer\n");
        ssize_t got = read(sock, buffer + have, sizeof buffer - have);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) fail("xe: the simulator went away\n");
        have += (size_t)got;
    }
    int status;
    size_t out_left, err_left;
    *newline = 0;
    if (sscanf(buffer, "%d %zu %zu", &status, &out_left, &err_left) != 3) fail("xe: bad answer\n");
    char *data = newline + 1;
    size_t count = have - (size_t)(data - buffer);
    for (;;) {
        size_t take = count < out_left ? count : out_left;
        write_all(1, data, take);
        out_left -= take;
        data += take;
        count -= take;
        take = count < err_left ? count : err_left;
        write_all(2, data, take);
        err_left -= take;
        if (!out_left && !err_left) break;
        ssize_t got = read(sock, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) { count = 0; continue; }
        if (got <= 0) fail("xe: the simulator went away\n");
        data = buffer;
        count = (size_t)got;
    }
    return status;
}
"""


def _recv_exact(sock, count):
    chunks = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def main(argv):
    """The Python client: ``SOCKET HOST XE-ARGS...``; returns the call's exit status."""
    if len(argv) < 2:
        sys.stderr.write("usage: xeclient.py SOCKET HOST XE-ARGS...\n")
        return 2
    path, host, args = argv[0], argv[1], argv[2:]
    payload = "".join(a + "\0" for a in [host] + args).encode("utf-8", "surrogateescape")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sys.stderr.write("Error: Connection refused (calling connect )\n")
        return 1
    try:
        sock.sendall(b"X%d\n" % len(payload) + payload)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError
            data += chunk
        header, _, rest = data.partition(b"\n")
        status, out_length, err_length = (int(x) for x in header.split())
        if len(rest) < out_length + err_length:
            rest += _recv_exact(sock, out_length + err_length - len(rest))
    except (OSError, ValueError):
        sys.stderr.write("xe: the simulator went away\n")
        return 1
    _write_all(1, rest[:out_length])
    _write_all(2, rest[out_length:out_length + err_length])
    return status


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- building and installing the client (run in the harness, not by the client) -----------------


def compiled_client():
    """Returns the path of the compiled C client (built once per source and user, cached in the
    temp folder), or None when no C compiler works here."""
    import hashlib
    import shutil
    import stat
    import subprocess
    import tempfile

    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    digest = hashlib.sha256(C_SOURCE.encode()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"hgs-sim-xe-{os.getuid()}")
    binary = os.path.join(folder, f"xe-{digest}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None  # not a private folder of ours: build nothing there, use the Python client
    if os.path.exists(binary):
        return binary
    source = os.path.join(folder, f"xe-{digest}.{os.getpid()}.c")
    with open(source, "w") as handle:
        handle.write(C_SOURCE)
    partial = f"{binary}.{os.getpid()}"
    try:
        result = subprocess.run([compiler, "-O2", "-o", partial, source], capture_output=True, timeout=60)
        if result.returncode != 0:
            return None
        os.replace(partial, binary)  # atomic: another process may be building the same
        return binary
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        for leftover in (source, partial):
            if os.path.exists(leftover):
                os.unlink(leftover)


def write_xe_wrapper(folder, site_path, host_name, python=None, compiled=True):
    """Writes an executable ``xe`` in ``folder`` that calls the simulator server of ``site_path``
    as ``host_name``: the C client if ``compiled`` and a compiler is here, else the Python one.
    Returns its path."""
    import shutil
    import stat

    from hgs.sim.server import socket_path

    path = os.path.join(folder, "xe")
    sock = socket_path(site_path)
    binary = compiled_client() if compiled else None
    if os.path.exists(path):
        os.unlink(path)
    if binary:
        shutil.copyfile(binary, path)
        with open(path + ".conf", "w") as handle:
            handle.write(f"{sock}\n{host_name}\n")
    else:
        from shlex import quote

        words = " ".join(quote(w) for w in (python or sys.executable, "-I", "-S", os.path.abspath(__file__), sock,
                                            host_name))
        with open(path, "w") as handle:
            handle.write(f"#!/bin/sh\nexec {words} \"$@\"\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
