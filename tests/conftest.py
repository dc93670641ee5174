"""Suite-wide fixtures: the real local services (see tests/fixtures/services.py)."""

pytest_plugins = ["tests.fixtures.services"]
