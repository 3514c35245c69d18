"""KochAffine (identity, each component, fill, seeding), rotated classes, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.data._helpers import synthetic_dataset
from twinshot.data import AUGMENTATIONS, EpisodeSampler, KochAffine, NoAugmentation, add_rotated_classes
from twinshot.data.augment import _affine_grid
from twinshot.errors import ConfigError, DataError

OFF = dict(rotation=0.0, shear=0.0, scale=(1.0, 1.0), translate=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blob(b: int, h: int = 41, w: int = 61, at: tuple[float, float] = (8.0, -5.0)) -> torch.Tensor:
    """``b`` copies of a Gaussian spot centred at ``at`` = (x, y) from the image centre."""
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32).view(1, w) - (w - 1) / 2
    spot = torch.exp(-((xs - at[0]) ** 2 + (ys - at[1]) ** 2) / (2 * 2.5**2))
    return spot.expand(b, 1, h, w).clone()


def _centroids(images: torch.Tensor) -> torch.Tensor:
    """``(B, 2)`` centre of mass (x, y), centred like :func:`_blob`."""
    _, _, h, w = images.shape
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32).view(1, w) - (w - 1) / 2
    mass = images.sum((1, 2, 3))
    return torch.stack([(images * xs).sum((1, 2, 3)) / mass, (images * ys).sum((1, 2, 3)) / mass], 1)


def test_identity_when_all_components_are_off() -> None:
    x = torch.rand(5, 3, 17, 23)
    assert torch.equal(KochAffine(**OFF)(x, _gen()), x)
    assert torch.equal(KochAffine(p=0.0)(x, _gen()), x)
    assert torch.equal(NoAugmentation()(x, _gen()), x)


def test_images_that_draw_nothing_are_unchanged() -> None:
    x = torch.rand(400, 1, 12, 12)
    aug = KochAffine()
    out = aug(x, _gen(3))
    _, active = aug.matrices(400, _gen(3))
    unchanged = (out == x).flatten(1).all(1)
    assert torch.equal(unchanged, ~active)
    assert 0.02 < (~active).float().mean() < 0.12  # (1 - p) ** 4 = 0.0625


@pytest.mark.parametrize(
    "component",
    [
        dict(rotation=10.0),
        dict(shear=0.3),
        dict(scale=(0.8, 1.2)),
        dict(translate=2.0),
        dict(rotation=10.0, shear=0.3, scale=(0.8, 1.2), translate=2.0),
    ],
)
def test_warp_moves_a_spot_where_the_matrix_says(component: dict) -> None:
    aug = KochAffine(**{**OFF, **component, "p": 1.0})
    x = _blob(32)
    out = aug(x, _gen(5))
    forward, active = aug.matrices(32, _gen(5))
    assert active.all()
    start = torch.tensor([8.0, -5.0], dtype=torch.float64)
    expected = (forward[:, :, :2] @ start + forward[:, :, 2]).float()
    assert (_centroids(out) - expected).abs().max() < 0.1
    assert (_centroids(out) - _centroids(x)).abs().max() > 0.05  # it did move
    det = torch.linalg.det(forward[:, :, :2]).float()  # area change: mass scales with it
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)) * det, rtol=0.02)


def test_parameters_stay_in_their_ranges_and_fire_with_probability_p() -> None:
    n = 4000
    rot, _ = KochAffine(**{**OFF, "rotation": 10.0}).matrices(n, _gen(1))
    angle = torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))
    assert angle.abs().max() <= 10.0 and angle.abs().max() > 9.5
    assert abs((angle != 0).double().mean() - 0.5) < 0.03

    shear, _ = KochAffine(**{**OFF, "shear": 0.3}).matrices(n, _gen(2))
    off_diag = torch.stack([shear[:, 0, 1], shear[:, 1, 0]], 1)
    assert off_diag.abs().max() <= 0.3 and torch.equal(shear[:, 0, 0], torch.ones(n, dtype=torch.float64))

    scale, _ = KochAffine(**{**OFF, "scale": (0.8, 1.2)}).matrices(n, _gen(3))
    diag = torch.stack([scale[:, 0, 0], scale[:, 1, 1]], 1)
    assert diag.min() >= 0.8 and diag.max() <= 1.2 and scale[:, 0, 1].eq(0).all()
    assert abs((diag[:, 0] != 1).double().mean() - 0.5) < 0.03

    shift, _ = KochAffine(**{**OFF, "translate": 2.0}).matrices(n, _gen(4))
    assert shift[:, :, 2].abs().max() <= 2.0 and shift[:, :, 2].abs().max() > 1.9
    assert torch.equal(shift[:, :, :2], torch.eye(2, dtype=torch.float64).expand(n, 2, 2))


def test_fill() -> None:
    ones = torch.ones(16, 1, 20, 20)
    shifted = KochAffine(**{**OFF, "translate": 2.0, "p": 1.0})
    assert shifted(ones, _gen()).min() < 0.9  # zeros come in at the border
    filled = KochAffine(**{**OFF, "translate": 2.0, "p": 1.0, "fill": 1.0})
    assert torch.allclose(filled(ones, _gen()), ones)


def test_seeded_and_shape_preserving() -> None:
    x = torch.rand(8, 3, 28, 36)
    a, b = KochAffine()(x, _gen(9)), KochAffine()(x, _gen(9))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert not torch.equal(a, KochAffine()(x, _gen(10)))


def test_grid_matches_affine_grid() -> None:
    theta = torch.eye(2, 3).repeat(4, 1, 1) + 0.1 * torch.randn(4, 2, 3, generator=_gen())
    for h, w in [(105, 105), (28, 40)]:
        reference = F.affine_grid(theta, [4, 1, h, w], align_corners=False)
        assert torch.allclose(_affine_grid(theta, h, w), reference, atol=1e-6)


def test_rejects_bad_input_and_config() -> None:
    with pytest.raises(DataError, match="float \\(B, C, H, W\\)"):
        KochAffine()(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), _gen())
    with pytest.raises(ConfigError, match="scale"):
        KochAffine(scale=(1.2, 0.8))
    with pytest.raises(ConfigError, match="p must be in"):
        KochAffine(p=2)
    with pytest.raises(ConfigError, match="flip must be in"):
        KochAffine(flip=-0.1)


def test_flip_mirrors_left_right_with_its_probability() -> None:
    x = torch.rand(6, 2, 9, 14)
    assert torch.allclose(KochAffine(**OFF, flip=1.0)(x, _gen()), torch.flip(x, dims=[3]), atol=1e-6)
    # with the other components on, the spot lands where the flipped matrix says
    aug = KochAffine(rotation=0.0, shear=0.0, scale=(1.0, 1.0), translate=3.0, p=1.0, flip=1.0)
    out = aug(_blob(4), _gen(1))
    forward, active = aug.matrices(4, _gen(1))
    expected = forward @ torch.tensor([8.0, -5.0, 1.0], dtype=torch.float64)
    assert active.all() and (forward[:, 0, 0] == -1).all()
    assert torch.allclose(_centroids(out), expected.float(), atol=0.05)
    _, active = KochAffine(**OFF, flip=0.3)(x, _gen()), KochAffine(**OFF, flip=0.3).matrices(4000, _gen(2))[1]
    assert 0.26 < active.float().mean() < 0.34


def test_flip_off_keeps_the_random_stream() -> None:
    """Configs written before `flip` existed give the same batches."""
    x = torch.rand(32, 1, 12, 12)
    assert torch.equal(KochAffine()(x, _gen(5)), KochAffine(flip=0.0)(x, _gen(5)))
    g = _gen(5)
    KochAffine()(x, g)
    h = _gen(5)
    KochAffine(flip=0.0)(x, h)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=h))


def test_registry() -> None:
    assert AUGMENTATIONS.names() == ["koch_affine", "none", "signature_strokes"]
    aug = AUGMENTATIONS.build("koch_affine", rotation=5.0, p=1.0)
    assert isinstance(aug, KochAffine) and aug.rotation == 5.0
    assert isinstance(AUGMENTATIONS.build("none"), NoAugmentation)
    with pytest.raises(ConfigError, match="unknown parameter\\(s\\) angle for augmentation 'koch_affine'"):
        AUGMENTATIONS.build("koch_affine", angle=3)
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'; valid: koch_affine, none, signature_strokes"):
        AUGMENTATIONS.build("flip")


# ---- rotated classes -----------------------------------------------------------------


def test_rotated_classes() -> None:
    ds = synthetic_dataset([3, 4, 2])
    ds.images = torch.randint(0, 256, ds.images.shape, dtype=torch.uint8, generator=_gen())
    out = add_rotated_classes(ds)
    assert len(out) == 4 * len(ds) and out.n_classes == 4 * ds.n_classes
    assert out.class_names[:3] == ds.class_names
    assert out.class_names[3:6] == [f"{n}@rot90" for n in ds.class_names]
    assert out.class_names[-1] == "g1/c02@rot270"
    assert torch.equal(out.class_groups, ds.class_groups.repeat(4))
    assert torch.equal(torch.bincount(out.labels), torch.bincount(ds.labels).repeat(4))
    assert torch.equal(out.images[: len(ds)], ds.images)
    for k in (1, 2, 3):  # counter-clockwise, like numpy.rot90
        block = out.images[k * len(ds) : (k + 1) * len(ds)].numpy()
        assert np.array_equal(block, np.rot90(ds.images.numpy(), k, axes=(2, 3)))
        assert torch.equal(out.labels[k * len(ds) : (k + 1) * len(ds)], ds.labels + k * 3)
    assert out.paths[len(ds)] == "img0.png@rot90"


def test_rotated_classes_keep_within_group_episodes() -> None:
    ds = synthetic_dataset([2] * 4, groups=[0, 0, 1, 1])
    out = add_rotated_classes(ds, rotations=(180,))
    assert out.n_classes == 8
    for ep in EpisodeSampler(out.labels, 4, 1, 1, 20, class_groups=out.class_groups, within_group=True):
        assert len(out.class_groups[out.labels[ep.support]].unique()) == 1


def test_rotation_errors() -> None:
    ds = synthetic_dataset([2, 2])
    with pytest.raises(ConfigError, match="multiples of 90"):
        add_rotated_classes(ds, rotations=(45,))
    with pytest.raises(ConfigError, match="multiples of 90"):
        add_rotated_classes(ds, rotations=(360,))
    with pytest.raises(ConfigError, match="repeat"):
        add_rotated_classes(ds, rotations=(90, -270))
    wide = synthetic_dataset([2, 2])
    wide.images = torch.zeros(4, 1, 4, 6, dtype=torch.uint8)
    with pytest.raises(DataError, match="4x6 images by 90"):
        add_rotated_classes(wide)
    assert len(add_rotated_classes(wide, rotations=(180,))) == 8


def test_rotation_angle_direction_for_koch_is_symmetric() -> None:
    angles = torch.rad2deg(
        torch.atan2(*KochAffine(**{**OFF, "rotation": 10.0, "p": 1.0}).matrices(2000, _gen())[0][:, [1, 0], 0].T)
    )
    assert abs(angles.mean().item()) < 0.5 and math.isclose(angles.abs().max().item(), 10.0, abs_tol=0.1)


def test_signature_strokes_change_ink_width_only() -> None:
    from twinshot.data.augment import SignatureStrokes

    x = torch.zeros(64, 1, 20, 30)
    x[:, :, 8:12, 5:25] = 1.0  # a 4-pixel-wide stroke
    aug = AUGMENTATIONS.build("signature_strokes", **OFF, p=0.0, stroke=1.0, stroke_p=1.0)
    assert isinstance(aug, SignatureStrokes)
    out = aug(x, _gen(0))
    ink = out.sum((1, 2, 3))
    assert (ink > x[0].sum()).any() and (ink < x[0].sum()).any()  # some thicker, some thinner
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:, :, :6], torch.zeros_like(out[:, :, :6]))  # no ink far from the stroke
    torch.testing.assert_close(aug(x, _gen(0)), out)  # seeded
    same = AUGMENTATIONS.build("signature_strokes", **OFF, p=0.0, stroke=0.0)
    assert torch.equal(same(x, _gen(0)), x)
    # the affine part draws first and the same as KochAffine's
    kw = dict(rotation=10.0, shear=0.0, scale=(1.0, 1.0), translate=0.0, p=1.0)
    torch.testing.assert_close(AUGMENTATIONS.build("signature_strokes", **kw, stroke=0.0)(x, _gen(3)), KochAffine(**kw)(x, _gen(3)))
    with pytest.raises(ConfigError, match="stroke must be in"):
        SignatureStrokes(stroke=2.0)
    with pytest.raises(ConfigError, match="stroke_p must be in"):
        SignatureStrokes(stroke_p=-1.0)
