"""The Gallery: enroll / identify / search / verify against brute force, persistence, the
model fingerprint, re-embedding, bad input, and approximate search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from twinshot.errors import ConfigError, DataError, TwinshotError
from twinshot.gallery import Gallery, reembed
from twinshot.gallery import search as search_mod
from twinshot.gallery.embedding import embed_sources

from tests.gallery.helpers import clustered, random_images, saved_model, tiny_model


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return saved_model(tmp_path / "model")


@pytest.fixture
def gallery(tmp_path: Path, model_dir: Path):
    g = Gallery.create(tmp_path / "g.db", model_dir)
    yield g
    g.close()


def _brute_identify(model, gallery_vecs, names, queries, rule):
    """Per-identity scores by brute force with the head's own pairwise logits."""
    with torch.no_grad():
        logits = model.head.pairwise_logits(torch.from_numpy(queries), torch.from_numpy(gallery_vecs)).numpy()
    unique = sorted(set(names))
    per = np.stack(
        [
            (logits[:, [j for j, n in enumerate(names) if n == u]].max(1) if rule == "max" else logits[:, [j for j, n in enumerate(names) if n == u]].mean(1))
            for u in unique
        ],
        1,
    )
    return unique, per


def test_enroll_identify_search_verify_round_trip(gallery: Gallery) -> None:
    imgs = random_images(6)
    r = gallery.enroll("alice", imgs[:2], {"badge": 7})
    assert r.created and len(r.image_ids) == 2
    gallery.enroll("bob", imgs[2])
    assert gallery.identity_names() == ["alice", "bob"] and len(gallery) == 2 and gallery.n_embeddings == 3
    assert gallery.identities()[0].metadata == {"badge": 7} and gallery.identities()[0].references == 2

    (res,) = gallery.identify(imgs[1], k=5)
    assert res.identity == "alice" and res.candidates[0].identity == "alice"
    assert [c.identity for c in res.candidates] == ["alice", "bob"]  # fewer than k: only what exists
    assert res.score == pytest.approx(res.candidates[0].score)

    result = gallery.search(imgs[2], k=5)
    # fewer than k enrolled: k is clamped to the gallery's size (issue 11: k = 10**9 was OOM)
    assert result.scores.shape == (1, 3) and result.image_ids.shape == (1, 3)
    assert result.image_ids[0, 0] == 3 and result.identities[0][0] == "bob"
    assert np.isfinite(result.scores).all() and (result.image_ids >= 0).all()
    assert [n.image_id for n in result.neighbours(0)] == result.image_ids[0, :3].tolist()
    huge = gallery.search(imgs[2], k=10**20)  # any size is clamped, nothing is allocated for it
    assert huge.scores.shape == (1, 3) and huge.image_ids[0].tolist() == result.image_ids[0].tolist()
    assert len(gallery.identify(imgs[2], k=10**20)[0].candidates) == 2

    v = gallery.verify(imgs[0], imgs[0])
    assert v.same and v.probability > 0.5
    assert gallery.remove("alice") == 2
    assert gallery.identity_names() == ["bob"] and gallery.n_embeddings == 1
    gallery.check()


@pytest.mark.parametrize("rule", ["max", "mean"])
@pytest.mark.parametrize("head", ["cosine", "euclidean", "weighted_l1"])
def test_identify_matches_brute_force(tmp_path: Path, head: str, rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(head, dim=16)
    g = Gallery.create(tmp_path / "g.db", model, rule=rule)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((120, 16)).astype(np.float32)
    counts = rng.integers(1, 5, 40)  # 40 identities, 1-4 references each
    names, rows, at = [], [], 0
    for i, c in enumerate(counts):
        c = min(int(c), 120 - at)
        if c == 0:
            break
        names += [f"id{i:02d}"] * c
        rows.append((f"id{i:02d}", vecs[at : at + c], None, None))
        at += c
    g.enroll_many(rows)
    queries = rng.standard_normal((11, 16)).astype(np.float32)
    unique, per = _brute_identify(model, vecs[:at], names, queries, rule)
    ref_order = np.argsort(-per, axis=1, kind="stable")[:, :7]
    for force_aggregate in (False, True):
        if force_aggregate:  # the scatter path, taken for large k * references
            monkeypatch.setattr(search_mod, "MAX_ROW_CANDIDATES", 0)
        results = g.identify_embeddings(queries, k=7, threshold=float("inf"))
        for i, res in enumerate(results):
            assert res.identity is None  # threshold +inf: nobody is accepted
            assert [c.identity for c in res.candidates] == [unique[j] for j in ref_order[i]]
            np.testing.assert_allclose([c.score for c in res.candidates], per[i, ref_order[i]], rtol=1e-4, atol=1e-4)
    g.close()


def test_identify_with_hnsw_agrees_with_exact(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    model = tiny_model("cosine", dim=32)
    vecs = clustered(3000, 32, 300, seed=1)
    path = tmp_path / "g.db"
    with Gallery.create(path, model) as g:
        g.enroll_many([(f"p{i // 2}", vecs[i : i + 2], None, None) for i in range(0, 3000, 2)])
    queries = clustered(50, 32, 300, seed=2)
    with Gallery.open(path, model, index="exact") as exact, Gallery.open(path, model, index="hnsw") as approx:
        e = exact.identify_embeddings(queries, k=3)
        a = approx.identify_embeddings(queries, k=3)
        agree = np.mean([x.candidates[0].identity == y.candidates[0].identity for x, y in zip(e, a)])
        assert agree >= 0.96
        for x, y in zip(e, a):  # scores of what approximate search finds are exact
            if x.candidates[0].identity == y.candidates[0].identity:
                assert x.score == pytest.approx(y.score, rel=1e-5, abs=1e-5)
        se, sa = exact.search_embeddings(queries, 10), approx.search_embeddings(queries, 10)
        from twinshot.gallery.index import approximate_recall

        assert approximate_recall(se.image_ids, sa.image_ids) >= 0.95
        assert approx.info()["index"] == "hnsw"
    # the built index is cached in the file: a new open loads it instead of building
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt instead of loading the cached index")

    from twinshot.gallery.index import HNSWIndex

    original = HNSWIndex.build
    HNSWIndex.build = no_build  # type: ignore[method-assign]
    try:
        with Gallery.open(path, model, index="hnsw") as again:
            again.enroll_embeddings("newcomer", queries[0])  # added incrementally, no rebuild
            assert again.identify_embeddings(queries[:1], k=1)[0].candidates[0].identity == "newcomer"
            again.remove("p0")
            assert "p0" not in [c.identity for r in again.identify_embeddings(vecs[:2], k=5) for c in r.candidates]
    finally:
        HNSWIndex.build = original  # type: ignore[method-assign]


def test_unknown_below_threshold_and_threshold_persists(tmp_path: Path, gallery: Gallery) -> None:
    imgs = random_images(3)
    gallery.enroll("alice", imgs[0])
    (res,) = gallery.identify(imgs[1])
    gallery.set_threshold(res.score + 1.0)
    (res2,) = gallery.identify(imgs[1])
    assert res2.identity is None and res2.candidates[0].identity == "alice" and res2.score == pytest.approx(res.score)
    own = gallery.identify(imgs[0])[0]  # alice's own image: the cosine head's largest score, 10 - 5
    assert own.score == pytest.approx(5.0, abs=1e-4) and gallery.threshold > 5.0 and own.identity is None
    path = gallery.path
    gallery.close()
    with Gallery.open(path) as g:
        assert g.threshold == pytest.approx(res.score + 1.0)


def test_embeddings_persist_exactly(tmp_path: Path, model_dir: Path) -> None:
    imgs = random_images(5)
    path = tmp_path / "g.db"
    with Gallery.create(path, model_dir, rule="mean") as g:
        g.enroll("a", imgs[:3])
        g.enroll("b", imgs[3:])
        before = g.search(imgs, k=5)
    with Gallery.open(path) as g:
        assert g.rule == "mean" and g.identity_names() == ["a", "b"]
        after = g.search(imgs, k=5)
        np.testing.assert_array_equal(before.image_ids, after.image_ids)
        np.testing.assert_array_equal(before.scores, after.scores)
        stored = g._store.load_rows().vectors
        expected = np.concatenate([embed_sources(g.model, imgs[:3]), embed_sources(g.model, imgs[3:])])
        np.testing.assert_array_equal(stored, expected)  # bit for bit, as enrolled


def test_duplicate_identity_refused_unless_replace_or_add(gallery: Gallery) -> None:
    imgs = random_images(4)
    gallery.enroll("alice", imgs[0])
    with pytest.raises(TwinshotError, match="already enrolled.*--replace"):
        gallery.enroll("alice", imgs[1])
    assert gallery.n_embeddings == 1
    r = gallery.enroll("alice", imgs[1:3], add=True)
    assert not r.created and gallery.identities()[0].references == 3
    r = gallery.enroll("alice", imgs[3], {"v": 2}, replace=True)
    assert r.replaced == 3 and gallery.identities()[0].references == 1 and gallery.identities()[0].metadata == {"v": 2}
    assert gallery.search(imgs[3], k=1).image_ids[0, 0] == r.image_ids[0]
    with pytest.raises(ConfigError, match="one of replace"):
        gallery.enroll("alice", imgs[0], replace=True, add=True)
    gallery.check()


def test_bad_input_leaves_the_gallery_unchanged(tmp_path: Path, gallery: Gallery) -> None:
    imgs = random_images(2)
    gallery.enroll("alice", imgs[0])
    generation = gallery._store.generation()
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(DataError, match="notes.png"):
        gallery.enroll("bob", [imgs[1], not_an_image])
    with pytest.raises(DataError, match="no such image"):
        gallery.enroll("bob", tmp_path / "missing.png")
    with pytest.raises(DataError, match=r"image #1 \(bytes\)"):
        gallery.enroll("bob", b"\x89PNG garbage")
    with pytest.raises(DataError, match="not an"):
        gallery.enroll("bob", np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(DataError, match="dimension"):
        gallery.enroll_embeddings("bob", np.zeros((1, 3)))
    with pytest.raises(DataError, match="non-empty"):
        gallery.enroll("  ", imgs[1])
    with pytest.raises(DataError, match="JSON"):
        gallery.enroll("bob", imgs[1], {"x": object()})
    with pytest.raises(TwinshotError, match="not enrolled"):
        gallery.remove("nobody")
    assert gallery._store.generation() == generation and gallery.identity_names() == ["alice"]
    gallery.check()


def test_images_of_another_kind_are_converted(gallery: Gallery) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8)  # colour, other size
    chw = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255  # a float tensor (C, H, W)
    gallery.enroll("colour", [rgb, chw])
    (res,) = gallery.identify(rgb)
    assert res.candidates[0].identity == "colour"


def test_empty_gallery_is_an_error(gallery: Gallery) -> None:
    img = random_images(1)
    with pytest.raises(TwinshotError, match="empty"):
        gallery.identify(img)
    with pytest.raises(TwinshotError, match="empty"):
        gallery.search(img, k=3)


def test_failed_write_rolls_back_memory_and_file(gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = random_images(3)
    gallery.enroll("alice", imgs[0])

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gallery._store, "_append_rows", explode)
    with pytest.raises(RuntimeError):
        gallery.enroll("bob", imgs[1:])
    with pytest.raises(RuntimeError):
        gallery.enroll("alice", imgs[1:], replace=True)  # the replace's delete is rolled back too
    monkeypatch.undo()
    assert gallery.identity_names() == ["alice"] and gallery.n_embeddings == 1
    assert gallery.identify(imgs[0])[0].candidates[0].identity == "alice"
    assert gallery.check()["embeddings"] == 1


def test_model_mismatch_is_refused_and_reembed_migrates(tmp_path: Path, model_dir: Path) -> None:
    other = saved_model(tmp_path / "other", seed=1, dim=24)
    imgs = random_images(4)
    kept_path = tmp_path / "kept.db"
    with Gallery.create(kept_path, model_dir, keep_images=True) as g:
        g.enroll("alice", imgs[:2])
        g.enroll("bob", imgs[2])
        g.set_threshold(1.5)
        assert g._store.images([1])[1].startswith(b"\x89PNG")  # arrays are kept as PNG
    with pytest.raises(TwinshotError, match="model mismatch.*fingerprint.*reembed"):
        Gallery.open(kept_path, other)
    g, summary = reembed(kept_path, other)
    with g:
        assert summary["n_embeddings"] == 3 and g.dim == 24 and g.threshold == 0.0
        assert g.identify(imgs[2])[0].candidates[0].identity == "bob"
        np.testing.assert_allclose(g._store.load_rows().vectors, embed_sources(g.model, imgs[:3]), rtol=1e-5, atol=1e-6)
        g.check()
    with Gallery.open(kept_path, other) as g:  # now it opens with the new model
        assert g.model_ref == str(other.resolve())
    with pytest.raises(TwinshotError, match="model mismatch"):
        Gallery.open(kept_path, model_dir)
    # a gallery without kept images cannot be migrated
    plain = tmp_path / "plain.db"
    with Gallery.create(plain, model_dir) as g:
        g.enroll("alice", imgs[0])
        with pytest.raises(TwinshotError, match="without keeping images"):
            g.reembed(other)


def test_reembed_drops_the_old_models_fpir_record_and_score_norm(tmp_path: Path, model_dir: Path, image_folder: Path) -> None:
    # an FPIR threshold and a cohort of embeddings belong to the old model's scores: after a
    # reembed, `gallery list` must not show "fpir=... at M=..." for a threshold reset to 0
    from twinshot.gallery.identification import calibrate_gallery, calibration_target
    from twinshot.gallery.scorenorm import set_score_norm, stored_norm

    other = saved_model(tmp_path / "other", seed=1, dim=24)
    files = sorted(image_folder.rglob("*.png"))
    with Gallery.create(tmp_path / "g.db", model_dir, keep_images=True) as g:
        g.enroll("a", [files[0]])
        g.enroll("b", [files[5]])
        set_score_norm(g, "znorm", cohort=image_folder / "alphabet1")
        calibrate_gallery(g, image_folder / "alphabet0", fpir=0.2, simulations=3)
        assert calibration_target(g) == "fpir=0.2 at M=2" and stored_norm(g._meta) is not None
        calls: list[tuple[int, int]] = []
        summary = g.reembed(other, progress=lambda done, total: calls.append((done, total)))
        assert calls == [(0, 2), (2, 2)]  # the CLI's bar starts at 0 of n, before the first chunk
        assert summary["calibration"] == "reset" and summary["score_norm"] == "reset"
        assert g.threshold == 0.0 and calibration_target(g) is None and stored_norm(g._meta) is None
        assert g.identify(files[5])[0].candidates[0].identity == "b"


def test_keep_images_stores_the_original_file_bytes(tmp_path: Path, model_dir: Path, image_folder: Path) -> None:
    files = sorted(image_folder.rglob("*.png"))[:2]
    with Gallery.create(tmp_path / "g.db", model_dir, keep_images=True) as g:
        r = g.enroll("x", files)
        kept = g._store.images(r.image_ids)
        assert [kept[i] for i in r.image_ids] == [f.read_bytes() for f in files]


def test_enroll_folder_one_identity_per_class(tmp_path: Path, model_dir: Path, image_folder: Path) -> None:
    stages = set()
    with Gallery.create(tmp_path / "g.db", model_dir, keep_images=True) as g:
        results = g.enroll_folder(image_folder, progress=lambda stage, done, total: stages.add(stage))
        assert len(results) == 8 and all(len(r.image_ids) == 5 for r in results)
        assert g.identity_names()[0] == "alphabet0/character01"
        assert stages == {"decode", "embed", "store"}
        assert g._store.count_images() == 40
        with pytest.raises(TwinshotError, match="already enrolled"):
            g.enroll_folder(image_folder)
        assert g.n_embeddings == 40  # refused as a whole
        g.enroll_folder(image_folder, replace=True)
        assert g.n_embeddings == 40 and g.check()["images"] == 40


def test_open_refuses_what_is_not_a_gallery(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(TwinshotError, match="no such gallery"):
        Gallery.open(tmp_path / "nope.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, just text")
    with pytest.raises(TwinshotError, match="not a twinshot gallery"):
        Gallery.open(junk)
    import sqlite3

    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(TwinshotError, match="not a twinshot gallery"):
        Gallery.open(other)
    Gallery.create(tmp_path / "g.db", model_dir).close()
    with pytest.raises(TwinshotError, match="already exists"):
        Gallery.create(tmp_path / "g.db", model_dir)
    Gallery.create(tmp_path / "g.db", model_dir, overwrite=True).close()
    assert not list(tmp_path.glob(".g.db.*"))  # no temporary file left behind


def test_in_memory_model_must_be_passed_on_open(tmp_path: Path) -> None:
    model = tiny_model()
    Gallery.create(tmp_path / "g.db", model).close()
    with pytest.raises(TwinshotError, match="never saved"):
        Gallery.open(tmp_path / "g.db")
    Gallery.open(tmp_path / "g.db", model).close()


def test_a_second_process_view_sees_changes(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "g.db"
    imgs = random_images(2)
    with Gallery.create(path, model_dir) as writer, Gallery.open(path) as reader:
        writer.enroll("alice", imgs[0])
        assert reader.identify(imgs[0])[0].candidates[0].identity == "alice"
        writer.remove("alice")
        writer.enroll("bob", imgs[1])
        assert reader.identity_names() == ["bob"]
        assert reader.identify(imgs[1])[0].candidates[0].identity == "bob"
        reader.enroll("carol", imgs[0])  # a write after someone else's write reloads cleanly
        assert sorted(writer.identity_names()) == ["bob", "carol"] and writer.search(imgs[0], k=2).identities[0][0] == "carol"


def test_calibrate_from_a_folder_and_a_pairs_csv(tmp_path: Path, gallery: Gallery, image_folder: Path) -> None:
    report = gallery.calibrate(folder=image_folder, eer=True, n_pairs=200, n_boot=100)
    assert report.n_genuine + report.n_impostor == 200 and gallery.threshold == pytest.approx(report.threshold)
    assert gallery.calibration.method == "platt" and gallery.calibration_report == report
    files = sorted(image_folder.rglob("*.png"))
    csv = tmp_path / "pairs.csv"
    rows = ["path1,path2,same"] + [f"{files[i]},{files[i + 1]},{'true' if i % 5 != 4 else 'false'}" for i in range(0, 38)]
    csv.write_text("\n".join(rows) + "\n")
    report2 = gallery.calibrate(pairs=csv, far=0.1, method="isotonic", n_boot=50)
    assert report2.target == "far=0.1" and report2.far <= 0.1 and gallery.calibration.method == "isotonic"
    with pytest.raises(ConfigError, match="exactly one"):
        gallery.calibrate(pairs=csv, folder=image_folder, eer=True)
    info = json.loads(json.dumps(gallery.info()))
    assert info["calibration_report"]["target"] == "far=0.1"


def test_a_score_exactly_on_the_threshold_is_accepted(gallery: Gallery) -> None:
    """The rule is ``score >= threshold``: equal is accepted, one float32 step below is not,
    in identify (per call and stored) and in verify."""
    vecs = np.random.default_rng(4).standard_normal((3, gallery.dim)).astype(np.float32)
    gallery.enroll_embeddings("alice", vecs[0])
    (probe,) = gallery.identify_embeddings(vecs[1], threshold=-np.inf)
    score = probe.score
    below = float(np.nextafter(np.float32(score), np.float32(np.inf)))  # a threshold just above it
    assert gallery.identify_embeddings(vecs[1], threshold=score)[0].identity == "alice"
    assert gallery.identify_embeddings(vecs[1], threshold=below)[0].identity is None
    gallery.set_threshold(score)
    assert gallery.identify_embeddings(vecs[1])[0].identity == "alice"
    gallery.set_threshold(below)
    assert gallery.identify_embeddings(vecs[1])[0].identity is None
    img = random_images(1, seed=9)[0]
    v = gallery.verify(img, img)
    gallery.set_threshold(v.score)
    assert gallery.verify(img, img).same
    gallery.set_threshold(float(np.nextafter(np.float32(v.score), np.float32(np.inf))))
    assert not gallery.verify(img, img).same
