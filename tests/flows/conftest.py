import pytest

from flowfakes import Site


@pytest.fixture
def site(tmp_path):
    """Returns a function building a fake Site in tmp_path (the 3-host HA pool by default)."""
    made = []

    def make(**kwargs):
        made.append(Site(tmp_path / f"site{len(made)}", **kwargs))
        return made[-1]

    return make
