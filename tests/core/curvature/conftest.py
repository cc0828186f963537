import pytest

from tests.core.curvature.exact import make_tiny


@pytest.fixture
def tiny():
    return make_tiny()
