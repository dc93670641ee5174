"""Suite-wide fixtures: the real local services (see tests/fixtures/services.py)."""

pytest_plugins = ["tests.fixtures.services"]


def pytest_configure(config: object) -> None:
    import pytest

    from tests.tracing_setup import install
    from tools.hot_path import HotPathError, check

    try:
        check()  # a stale compiled module would test the old code
    except HotPathError as exc:
        raise pytest.UsageError(str(exc)) from None
    install()
