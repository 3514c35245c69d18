"""Under CI a store server that cannot start fails the tests that need it; elsewhere they
are skipped with the reason."""

from __future__ import annotations

import pytest

from tests.gallery.stores.conftest import _unavailable


def test_a_server_that_cannot_start_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _unavailable("PostgreSQL (pgserver)", OSError("no such binary"))
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="could not start"):
        _unavailable("PostgreSQL (pgserver)", OSError("no such binary"))
