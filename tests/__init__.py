"""localedit test suite (a package, so tests can import shared helpers from tests.conftest)."""
