"""Claimed-identity verification: the claimed identity's references only, combined with the
gallery's rule, against brute force; the threshold decides; unknown identities are named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.gallery import ClaimVerification, Gallery, UnknownIdentity
from twinshot.gallery.claims import verify_claim_embeddings

from tests.gallery.helpers import clustered, random_images, saved_model, tiny_model


@pytest.mark.parametrize("rule", ["max", "mean"])
@pytest.mark.parametrize("head", ["cosine", "euclidean"])
def test_claim_scores_match_brute_force(tmp_path: Path, head: str, rule: str) -> None:
    model = tiny_model(head)
    g = Gallery.create(tmp_path / "g.db", model, rule=rule)
    vecs = clustered(9, 16, 3, seed=1)
    g.enroll_many([("a", vecs[:4], None, None), ("b", vecs[4:5], None, None), ("c", vecs[5:], None, None)])
    queries = clustered(5, 16, 3, seed=2)
    with torch.no_grad():
        logits = model.head.pairwise_logits(torch.from_numpy(queries), torch.from_numpy(vecs[:4])).numpy()
    expected = logits.max(1) if rule == "max" else logits.mean(1)
    claims = verify_claim_embeddings(g, "a", queries)
    assert [c.references for c in claims] == [4] * 5 and all(c.rule == rule for c in claims)
    np.testing.assert_allclose([c.score for c in claims], expected, rtol=1e-4, atol=1e-4)
    mid = float(np.median(expected))
    decided = verify_claim_embeddings(g, "a", queries, threshold=mid)
    assert [c.same for c in decided] == (expected >= mid).tolist()
    g.close()


def test_verify_claim_on_images(tmp_path: Path) -> None:
    g = Gallery.create(tmp_path / "g.db", saved_model(tmp_path / "m"), threshold=0.0)
    imgs = random_images(4)
    g.enroll("alice", imgs[:2])
    g.enroll("bob", imgs[2])
    r = g.verify_claim("alice", imgs[1])
    assert isinstance(r, ClaimVerification) and r.identity == "alice" and r.references == 2
    assert r.same == (r.score >= g.threshold) and r.threshold == g.threshold
    (found,) = g.identify(imgs[1], k=2)
    assert r.score == pytest.approx({c.identity: c.score for c in found.candidates}["alice"], abs=1e-5)
    assert r.to_dict()["references"] == 2
    with pytest.raises(UnknownIdentity, match="identity 'carol' is not enrolled"):
        g.verify_claim("carol", imgs[0])
    g.remove("bob")
    with pytest.raises(UnknownIdentity, match="'bob'"):
        g.verify_claim("bob", imgs[0])
    g.close()
