"""The battery's inputs, built once per session (see world.py)."""

import pytest

from tests.reliability.world import build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("hostile"))
