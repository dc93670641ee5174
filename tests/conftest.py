"""Suite-wide fixtures: the real local services (see tests/fixtures/services.py)."""

import os

import pytest

from tools.hot_path import HotPathError, check, up_to_date

pytest_plugins = ["tests.fixtures.services"]


@pytest.fixture
def compiled_hot_path() -> None:
    """CI tests the compiled hot path, as it ships; elsewhere it may be pure (make pure)."""
    if not up_to_date():
        if os.environ.get("CI"):
            pytest.fail("CI must test the compiled hot path: `make compile` did not run")
        pytest.skip("the hot path is not compiled here (make compile)")


def pytest_configure(config: object) -> None:
    from tests.tracing_setup import install

    try:
        check()  # a stale compiled module would test the old code
    except HotPathError as exc:
        raise pytest.UsageError(str(exc)) from None
    install()
