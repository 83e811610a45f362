"""The secrets unit tests share the integration tests' leak check: no value a test creates reaches the log."""

from tests.helpers.leaks import leaks  # noqa: F401 - the autouse leak check, for every test here
