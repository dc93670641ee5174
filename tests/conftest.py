"""Suite-wide fixtures: the real local services (see tests/fixtures/services.py)."""

pytest_plugins = ["tests.fixtures.services"]


def pytest_configure(config: object) -> None:
    from tests.tracing_setup import install

    install()
