"""The test-suite guards: a missing browser or module fails CI and skips loudly elsewhere."""

import pytest

from tests.conftest import require_binary, require_module


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_module_or_binary_fails_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="no_such_module_xyz"):
        require_module("no_such_module_xyz")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-xyz is not installed"):
        require_binary("no-such-binary-xyz")


def test_a_missing_module_or_binary_skips_with_the_reason_elsewhere(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_xyz cannot be imported"):
        require_module("no_such_module_xyz")
    with pytest.raises(pytest.skip.Exception, match="no-such-binary-xyz is not installed"):
        require_binary("no-such-binary-xyz")


def test_what_is_there_is_returned():
    assert require_module("json").dumps([]) == "[]"
    assert require_binary("sh").endswith("/sh")
