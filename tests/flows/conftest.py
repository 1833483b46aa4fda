import os
import shutil
import tempfile
from pathlib import Path

import pytest

from flowfakes import Site


@pytest.fixture
def site(tmp_path):
    """Returns a function building a fake Site (the 3-host HA pool by default) in a fresh folder.

    The folders are on /dev/shm when there is one: the real state file fsyncs every write,
    which a sweep of hundreds of runs would otherwise wait on. Removed after the test."""
    base = Path(tempfile.mkdtemp(prefix="hgs-flows-", dir="/dev/shm")) if os.path.isdir("/dev/shm") else tmp_path
    made = []

    def make(**kwargs):
        made.append(Site(base / f"site{len(made)}", **kwargs))
        return made[-1]

    yield make
    if base != tmp_path:
        shutil.rmtree(base, ignore_errors=True)
