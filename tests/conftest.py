"""Fixtures shared by several test files."""

from tests.labelstudio_server import labelstudio_server  # noqa: F401  (session-scoped server)
