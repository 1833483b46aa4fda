"""This box's files written whole or not at all."""

import os
import tempfile


def write_atomic(path, data, mode=0o600, fsync=True, suffix=".tmp"):
    """Writes ``data`` (str or bytes) to ``path`` through a temporary file in the same folder,
    with ``mode``, then renames it over ``path``: a reader sees the old file or the new one,
    never a part. Raises OSError; the temporary file is removed on failure."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hgs.", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
