"""``python -m bench.soak --tiny``: the soak runs end to end (a few seconds of load) with no
error, no non-2xx answer, no lost confirmed change and a gallery that passes its check."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_soak_tiny() -> None:
    from bench.soak import main

    out = main(["--tiny"])
    assert out["non_2xx"] == 0 and not out["client_errors"]
    assert out["statuses"]["identify"].get("200", 0) > 0 and out["confirmed_changes"] > 0
    assert out["lost_confirmed_changes"] == 0 and out["gallery_check_ok"]
    assert all(r["failed"] == 0 and r["runs"] >= 1 for r in out["cli_readers"])
    assert len(out["server_rss_mb"]) >= 2
