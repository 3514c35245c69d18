"""The shipped ``omniglot-ensemble`` (an ``ensemble`` encoder: the ``omniglot`` weights at
28 px and two 42 px members (two seeds), all resized inside from Omniglot's 105 px) through the command line: a gallery of real Omniglot drawings,
``verify``, ``models list``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from twinshot.cli.main import cli
from twinshot.models import load_model, model_metadata

from tests.cli.test_gallery import _extract


def run_json(capsys, *args: object):
    code = cli([str(a) for a in args] + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _first_member_is(ensemble: str, own: str):
    """Load the shipped ``ensemble``, check that its first member holds ``own``'s encoder weights bit for bit."""
    ens, alone = load_model(ensemble), load_model(own)
    assert ens.spec.encoder == "ensemble"
    first = ens.encoder.members[0].encoder
    for k, v in alone.encoder.state_dict().items():
        torch.testing.assert_close(first.state_dict()[k], v, rtol=0, atol=0)
    return ens, alone


def test_shipped_ensemble_holds_the_omniglot_weights() -> None:
    ens, _ = _first_member_is("omniglot-ensemble", "omniglot")
    assert ens.embedding_dim == 128 + 512 + 512 and ens.preprocessing.size == (105, 105)
    meta = model_metadata("omniglot-ensemble")
    assert [m["input_size"] for m in meta["members"]] == [28, 42, 42] and "command" in meta
    assert all(m["command"] for m in meta["members"])  # each member's training command


def test_gallery_and_verify_with_the_ensemble(capsys, tmp_path: Path, omniglot_dir: Path) -> None:
    small = omniglot_dir / "images_background_small1.zip"
    enrolled = _extract(small, tmp_path / "enroll", lambda a, c, i: a == "Latin" and i == 0)
    queries = _extract(small, tmp_path / "queries", lambda a, c, i: a == "Latin" and i == 1)
    gallery = tmp_path / "g.db"
    run_json(capsys, "gallery", "create", gallery, "--model", "omniglot-ensemble")
    assert run_json(capsys, "gallery", "enroll-folder", gallery, tmp_path / "enroll", "--no-progress")["n_enrolled"] == 26
    results = run_json(capsys, "gallery", "identify", gallery, *queries, "--threshold", "-1000")
    right = sum(r["identity"] == f"Latin/{Path(q).parent.name}" for r, q in zip(results, queries))
    assert right >= 20  # Latin was a training alphabet of both members
    assert run_json(capsys, "verify", "omniglot-ensemble", queries[1], queries[1])["probability"] > 0.99
    assert run_json(capsys, "verify", "omniglot-ensemble", enrolled[0], enrolled[5])["same"] is False
    shipped = {m["name"]: m for m in run_json(capsys, "models", "list")["shipped"]}
    assert shipped["omniglot-ensemble"]["encoder"] == "ensemble" and "ensemble" in shipped["omniglot-ensemble"]["description"]


def test_shipped_minimal_ensemble_holds_the_omniglot_minimal_weights() -> None:
    ens, own = _first_member_is("omniglot-minimal-ensemble", "omniglot-minimal")
    assert ens.embedding_dim == 64 + 128 and ens.preprocessing.size == (28, 28)
    image = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        both, alone = ens.embed(image), own.embed(image)
    # the first 64 numbers are omniglot-minimal's embedding scaled by sqrt(1/2)
    torch.testing.assert_close(both[:, :64] * 2**0.5, alone, rtol=1e-4, atol=1e-5)
    assert "command" in model_metadata("omniglot-minimal-ensemble")
