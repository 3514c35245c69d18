"""The fuzz corpus through the library's decoding (``decode_image_array``, ``load_image``,
``load_images``): every file decodes or is refused with a one-line DataError naming it;
pictures decode, blank and broken files never do."""

from __future__ import annotations

import collections

import pytest

from twinshot.data import Preprocessing, load_image, load_images
from twinshot.errors import DataError
from twinshot.preprocessing import decode_image_array

from tests.fuzz.corpus import Item

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning", "ignore::DeprecationWarning")  # PIL on damaged files

PREPROCESSINGS = [
    Preprocessing(size=(28, 28), invert=True),
    Preprocessing(size=(32, 32), channels=3, mean=0.5, std=0.25),
]


def outcome(item: Item, decode) -> str:
    """``"ok"`` or ``"refused"``; anything but a clean DataError fails the test."""
    try:
        decode()
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.strip() == msg and msg, (item.what, msg)
        assert "Traceback" not in msg
        return "refused"
    return "ok"


@pytest.mark.timeout(180)
def test_every_corpus_file_decodes_or_is_refused_cleanly(corpus: list[Item]) -> None:
    assert len(corpus) >= 500
    counts: collections.Counter = collections.Counter()
    for item in corpus:
        for p in PREPROCESSINGS:
            got = outcome(item, lambda: decode_image_array(item.path, p))
            if got == "refused":
                try:
                    decode_image_array(item.path, p)
                except DataError as exc:
                    assert str(exc).startswith(f"{item.path}: "), (item.what, str(exc))  # names the file
            from_bytes = outcome(item, lambda: decode_image_array(item.path.read_bytes(), p))
            assert from_bytes == got, item.what  # a path and its bytes decode alike
            counts[item.kind, got] += 1
            if item.kind == "valid":
                assert got == "ok", item.what
            elif item.kind in ("blank", "broken"):
                assert got == "refused", item.what
    assert counts["any", "ok"] > 0 and counts["any", "refused"] > 0  # the mutations reach both
    print("library outcomes:", dict(sorted(counts.items())))


def test_torch_loaders_agree_with_the_numpy_decoder(corpus: list[Item]) -> None:
    p = PREPROCESSINGS[0]
    for item in corpus[::7]:
        expected = outcome(item, lambda: decode_image_array(item.path, p))
        assert outcome(item, lambda: load_image(item.path, p)) == expected, item.what
    good = [i.path for i in corpus if i.kind == "valid"][:20]
    bad = next(i for i in corpus if i.kind == "blank")
    assert load_images(good, p).shape == (20, 1, 28, 28)
    with pytest.raises(DataError, match=bad.path.name):
        load_images([*good[:3], bad.path], p)  # one bad file in a batch names itself
