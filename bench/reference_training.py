"""A plain PyTorch training loop for the Omniglot preset, written the usual way: the
baseline that ``bench/run.py`` compares twinshot's trainer with.

* a :class:`torch.utils.data.Dataset` that, for each item, reads the PNG from the zip,
  decodes it with PIL, converts it to grey, resizes it to the preset's size (bilinear), inverts it
  (ink becomes the foreground) and applies a random affine distortion *to that one image*
  with PIL (the distribution of :class:`twinshot.data.KochAffine`: each of rotation
  U(-10, 10) degrees, shear U(-0.3, 0.3), scale U(0.8, 1.2) and translation U(-2, 2) px
  applied with probability 0.5, about the centre, bilinear, background 0), then makes a
  float tensor of it;
* a batch sampler yielding 20-way 1-shot 5-query episodes (support first, then queries);
* a :class:`torch.utils.data.DataLoader` with 2 worker processes (``num_workers=2``,
  ``persistent_workers=True``, default collation);
* the same model (:func:`twinshot.models.build_model` of the preset's spec), the same loss
  written out (prototypical: cross-entropy of the negated squared euclidean distances of
  the queries to the class means of the support), Adam with the same learning rate.

Used by ``bench/run.py``; ``python -m bench.reference_training --steps 20`` runs it alone.
"""

from __future__ import annotations

import argparse
import io
import math
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

OMNIGLOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "omniglot" / "images_background.zip"


def list_characters(zip_path: str | Path, alphabets: Sequence[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """``(members, labels, class names)`` of the PNGs ``images_background/<alphabet>/<character>/x.png``
    in the zip, restricted to ``alphabets`` when given; labels number the characters."""
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".png"))
    members, labels, classes = [], [], {}
    keep = set(alphabets) if alphabets is not None else None
    for n in names:
        parts = n.split("/")
        if len(parts) < 4 or (keep is not None and parts[-3] not in keep):
            continue
        cls = f"{parts[-3]}/{parts[-2]}"
        labels.append(classes.setdefault(cls, len(classes)))
        members.append(n)
    return members, labels, list(classes)


def random_affine(rng: np.random.Generator, size: int, p: float = 0.5) -> tuple[float, ...] | None:
    """The PIL ``Image.AFFINE`` coefficients (output -> input) of one random Koch-style
    distortion about the image centre, or ``None`` when no component is drawn."""
    on = rng.random(4) < p
    if not on.any():
        return None
    u = rng.uniform(-1.0, 1.0, 7)
    angle = math.radians(10.0) * u[0] if on[0] else 0.0
    sx, sy = (0.3 * u[1], 0.3 * u[2]) if on[1] else (0.0, 0.0)
    cx, cy = (1.0 + 0.2 * u[3], 1.0 + 0.2 * u[4]) if on[2] else (1.0, 1.0)
    tx, ty = (2.0 * u[5], 2.0 * u[6]) if on[3] else (0.0, 0.0)
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotate @ np.array([[1.0, sx], [sy, 1.0]]) @ np.diag([cx, cy])
    inv = np.linalg.inv(linear)
    c = (size - 1) / 2.0
    # x_in - c = inv @ (x_out - c - t)
    offset = np.array([c, c]) - inv @ (np.array([c, c]) + np.array([tx, ty]))
    return (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])


class OmniglotZipDataset(Dataset):
    """One item: ``(image float (1, size, size), label)``, decoded from the zip on every access."""

    def __init__(self, zip_path: str | Path, members: Sequence[str], labels: Sequence[int], size: int = 28, augment: bool = True) -> None:
        self.zip_path = str(zip_path)
        self.members = list(members)
        self.labels = list(labels)
        self.size = size
        self.augment = augment
        self._zip: zipfile.ZipFile | None = None
        self._rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.members)

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:  # one handle per worker process
            self._zip = zipfile.ZipFile(self.zip_path)
            info = get_worker_info()
            self._rng = np.random.default_rng(1000 + (info.id if info is not None else 0))
        return self._zip

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        data = self._archive().read(self.members[i])
        img = Image.open(io.BytesIO(data)).convert("L").resize((self.size, self.size), Image.BILINEAR)
        img = Image.fromarray(255 - np.asarray(img, dtype=np.uint8))
        if self.augment:
            coeffs = random_affine(self._rng, self.size)
            if coeffs is not None:
                img = img.transform(img.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=0)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
        return x, self.labels[i]


class EpisodeBatchSampler(Sampler[list[int]]):
    """``steps`` episodes of ``n_way`` random classes, ``n_shot`` support then ``n_query``
    query indices per class (index lists: all supports first, then all queries)."""

    def __init__(self, labels: Sequence[int], n_way: int, n_shot: int, n_query: int, steps: int, seed: int = 0) -> None:
        self.by_class: dict[int, list[int]] = {}
        for i, y in enumerate(labels):
            self.by_class.setdefault(int(y), []).append(i)
        self.classes = [c for c, v in self.by_class.items() if len(v) >= n_shot + n_query]
        self.n_way, self.n_shot, self.n_query, self.steps = n_way, n_shot, n_query, steps
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            classes = self.rng.choice(self.classes, self.n_way, replace=False)
            support, query = [], []
            for c in classes:
                picks = self.rng.choice(self.by_class[int(c)], self.n_shot + self.n_query, replace=False)
                support.extend(int(i) for i in picks[: self.n_shot])
                query.extend(int(i) for i in picks[self.n_shot :])
            yield support + query


def prototypical_loss(embeddings: torch.Tensor, n_way: int, n_shot: int, n_query: int) -> torch.Tensor:
    """Embeddings ``(n_way * (n_shot + n_query), D)``, supports first (class-major), then queries."""
    s = n_way * n_shot
    prototypes = embeddings[:s].view(n_way, n_shot, -1).mean(1)
    queries = embeddings[s:]
    logits = -((queries[:, None, :] - prototypes[None, :, :]) ** 2).sum(-1)
    targets = torch.arange(n_way).repeat_interleave(n_query)
    return F.cross_entropy(logits, targets)


def make_loader(
    zip_path: str | Path, alphabets: Sequence[str] | None, *, n_way: int, n_shot: int, n_query: int, steps: int,
    workers: int = 2, seed: int = 0, augment: bool = True, size: int = 28,
) -> DataLoader:
    members, labels, _ = list_characters(zip_path, alphabets)
    dataset = OmniglotZipDataset(zip_path, members, labels, size=size, augment=augment)
    sampler = EpisodeBatchSampler(labels, n_way, n_shot, n_query, steps, seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0)


def train_steps(model: Any, loader: DataLoader, *, n_way: int, n_shot: int, n_query: int, lr: float = 1e-3,
                warmup: int = 3, on_step: Any = None) -> dict[str, Any]:
    """Train on every batch of ``loader``; the first ``warmup`` steps (worker start-up) are
    not timed. Returns ``{"images", "seconds", "images_per_s", "losses"}``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    images, seconds, losses = 0, 0.0, []
    t = time.perf_counter()
    for step, (x, _) in enumerate(loader):
        optimizer.zero_grad(set_to_none=True)
        loss = prototypical_loss(model.embed(x), n_way, n_shot, n_query)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        now = time.perf_counter()
        if step >= warmup:
            images += x.shape[0]
            seconds += now - t
        if on_step is not None:
            on_step(step, now - t)
        t = now
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds if seconds > 0 else float("nan"), "losses": losses}


def main(argv: Sequence[str] | None = None) -> None:
    from twinshot.training import load_config, model_spec
    from twinshot.models import build_model

    ap = argparse.ArgumentParser(prog="python -m bench.reference_training", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    config = load_config(preset="omniglot")
    s = config.sampler
    torch.manual_seed(0)
    model = build_model(model_spec(config))
    size = model_spec(config).preprocessing.size[0]
    loader = make_loader(OMNIGLOT, None, n_way=s.n_way, n_shot=s.n_shot, n_query=s.n_query, steps=args.steps, workers=args.workers, size=size)
    r = train_steps(model, loader, n_way=s.n_way, n_shot=s.n_shot, n_query=s.n_query, lr=config.optimizer.lr)
    print(f"reference: {r['images_per_s']:.0f} images/s over {r['images']} images (loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f})")


if __name__ == "__main__":
    main()
