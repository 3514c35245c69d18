"""``twinshot models list`` describes the shipped models (with their losses) and lists the
registered encoders, heads and losses."""

from __future__ import annotations

import json

from twinshot.cli.main import cli


def test_models_list_describes_shipped_models_and_losses(capsys) -> None:
    assert cli(["models", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    shipped = {m["name"]: m for m in out["shipped"]}
    assert shipped["faces-orl"]["loss"] == "prototypical" and shipped["omniglot"]["loss"] == "triplet"
    assert "ORL" in shipped["faces-orl"]["description"]
    assert 0 < shipped["omniglot"]["validation"]["accuracy"] <= 1
    assert {e["name"] for e in out["losses"]} >= {"contrastive", "triplet", "bce", "prototypical"}
    assert all(e["description"] for e in out["losses"] + out["encoders"] + out["heads"])
    assert cli(["models", "list"]) == 0
    text = capsys.readouterr().out
    assert "losses:" in text and "trained with the prototypical loss" in text and "faces-orl:" in text


def test_a_ported_model_says_how_it_was_made_not_the_none_loss(capsys) -> None:
    # `faces` was ported, not trained: its line read "faces: " and "trained with the None loss"
    assert cli(["models", "list"]) == 0
    text = capsys.readouterr().out
    assert "None loss" not in text
    faces = text.split("\n  faces: ", 1)[1].split("\n  faces-orl:", 1)[0]
    assert "no training" in faces and "not trained by twinshot" in faces
