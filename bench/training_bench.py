"""Training throughput of the Omniglot preset: twinshot's trainer vs a plain PyTorch
reference (:mod:`bench.reference_training`), the fraction of the machine's measured
float32 matmul peak that training reaches, and time to accuracy.

Used by ``bench/run.py`` (``make bench``). Each function returns plain JSON-able dicts;
figures measured over repeats are summarised by :func:`summary` (median, quartiles, min,
max).
"""

from __future__ import annotations

import csv
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

#: The goal of the issue: within-alphabet 20-way one-shot error under this (Koch et al.).
TARGET_ERROR = 0.08


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles, min, max and count of repeated measurements."""
    v = sorted(float(x) for x in values)
    if not v:
        return {"median": math.nan, "p25": math.nan, "p75": math.nan, "min": math.nan, "max": math.nan, "repeats": 0}
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "p25": q[0], "p75": q[2], "min": v[0], "max": v[-1], "repeats": len(v)}


# -- the machine's peak ----------------------------------------------------------------------


def matmul_peak(n: int = 2048, repeats: int = 5, min_time: float = 0.5, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """FLOP/s of a ``(n, n) @ (n, n)`` product in ``dtype`` with torch (all threads): ``2 n^3``
    floating-point operations per product. Returns ``{"n", "dtype", "flops_per_s": summary}``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        count, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        rates.append(2.0 * n**3 * count / dt)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(), "flops_per_s": summary(rates)}


def _model_and_context(config: Any, data: Any, augment: Any, seed: int = 0) -> tuple[Any, Any]:
    """The preset's model (channels-last if the config says so) and the batch context with
    the config's precision, as ``twinshot train`` builds them."""
    from twinshot.training.batches import BatchContext
    from twinshot.training.run import build_training_model

    torch.manual_seed(seed)
    model = build_training_model(config)
    ctx = BatchContext(data.train.images, data.train.labels, model.preprocessing, augment,
                       precision=config.run.precision, channels_last=config.run.channels_last)
    return model, ctx


# -- the preset ------------------------------------------------------------------------------


#: Both loops train on 20-way 1-shot 5-query episodes with the prototypical loss (the plain
#: reference is written for episodes); the model, input size and augmentation are the preset's.
EPISODIC = ['loss.name="prototypical"', "loss.params={}", "sampler.n_way=20", "sampler.n_shot=1", "sampler.n_query=5", "data.rotations=[]"]


def preset_config(augmentation: str = "koch_affine", overrides: Sequence[str] = ()) -> Any:
    """The ``omniglot`` preset's model with ``augmentation`` (the reference augments every
    image, so the comparison turns the same distortions on for twinshot too), trained on
    episodes (:data:`EPISODIC`) so both loops do exactly the same work per step."""
    from twinshot.training import apply_overrides, load_config

    config = load_config(preset="omniglot")
    return apply_overrides(config, [*EPISODIC, f"augmentation.name={augmentation}", *overrides])


def load_data(config: Any) -> tuple[Any, float]:
    """The preset's data, loaded and split as ``twinshot train`` does, and the seconds it took."""
    from twinshot.training.data import prepare_data
    from twinshot.training.run import model_spec

    t = time.perf_counter()
    data = prepare_data(config.data, model_spec(config).preprocessing, progress=False)
    return data, time.perf_counter() - t


def step_flops(config: Any, data: Any) -> dict[str, Any]:
    """Floating-point operations of one training step (forward, loss, backward) of the
    preset's model on one episode, counted with ``torch.utils.flop_counter.FlopCounterMode``
    (matrix products and convolutions), and per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from twinshot.losses import LOSSES
    from twinshot.models import build_model
    from twinshot.training.batches import BatchContext, step_function
    from twinshot.training.run import _make_sampler, model_spec

    torch.manual_seed(0)
    model = build_model(model_spec(config)).train()
    loss = LOSSES.build(config.loss.name, **config.loss.params)
    sampler = _make_sampler(config, loss.batch_kind, data.train)
    ctx = BatchContext(data.train.images, data.train.labels, model.preprocessing, lambda x: x)
    batch = next(iter(sampler))
    counter = FlopCounterMode(display=False)
    with counter:
        value, n_images = step_function(loss.batch_kind)(model, loss, batch, ctx)
        value.backward()
    total = int(counter.get_total_flops())
    return {"flops_per_step": total, "images_per_step": int(n_images), "flops_per_image": total / max(1, n_images)}


class _EpochRates:
    """Trainer callback: images/s of each epoch (time inside training steps only)."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self._images = 0
        self._seconds = 0.0

    def on_step_end(self, trainer: Any) -> None:
        pass

    def on_epoch_end(self, trainer: Any) -> None:
        s = trainer.state
        images, seconds = s.images - self._images, s.train_seconds - self._seconds
        self._images, self._seconds = s.images, s.train_seconds
        self.rates.append(images / seconds if seconds > 0 else math.nan)


def twinshot_training(config: Any, data: Any, *, steps: int, repeats: int, threads: int | None = None) -> dict[str, Any]:
    """images/s of twinshot's own :class:`twinshot.training.trainer.Trainer` on the preset:
    ``repeats + 1`` epochs of ``steps`` steps without validation (the first is warm-up and
    dropped); each epoch's rate counts the time inside training steps (the trainer's own
    ``images_per_s``: sampling, indexing the in-memory images, batch augmentation, forward,
    loss, backward, optimiser)."""
    from twinshot.losses import LOSSES
    from twinshot.training import apply_overrides
    from twinshot.training.batches import step_function
    from twinshot.training.optim import build_optimizer, build_scheduler
    from twinshot.training.run import _make_augment, _make_sampler, available_cores
    from twinshot.training.trainer import Trainer

    config = apply_overrides(config, [f"run.epochs={repeats + 1}", f"run.steps_per_epoch={steps}"])
    torch.set_num_threads(threads or config.run.threads or available_cores())
    loss = LOSSES.build(config.loss.name, **config.loss.params)
    generator = torch.Generator().manual_seed(config.run.seed + 1)
    model, context = _model_and_context(config, data, _make_augment(config, generator), seed=config.run.seed)
    optimizer = build_optimizer(config.optimizer, model)
    scheduler = build_scheduler(config.schedule, optimizer, config.total_steps)
    sampler = _make_sampler(config, loss.batch_kind, data.train)
    rates = _EpochRates()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "run").mkdir()
        trainer = Trainer(
            model, loss, sampler, context, step_function(loss.batch_kind), optimizer, scheduler,
            config=config, run_dir=Path(tmp) / "run", validate=None, generators={"augmentation": generator},
            callbacks=[rates],
        )
        trainer.fit()
    kept = rates.rates[1:] if len(rates.rates) > 1 else rates.rates
    return {
        "images_per_s": summary(kept),
        "steps_per_repeat": steps,
        "images_per_step": config.sampler.n_way * (config.sampler.n_shot + config.sampler.n_query),
        "augmentation": config.augmentation.name,
        "threads": torch.get_num_threads(),
        "precision": context.precision,
        "channels_last": bool(config.run.channels_last),
    }


def reference_training(config: Any, data: Any, *, steps: int, repeats: int, workers: int = 2, threads: int | None = None) -> dict[str, Any]:
    """images/s of the plain PyTorch loop of :mod:`bench.reference_training` on the same
    training alphabets, episodes, model, loss and optimiser: one DataLoader of
    ``(repeats + 1) * steps`` episodes whose first ``steps`` (worker start-up and warm-up)
    are dropped; the rest is cut into ``repeats`` blocks of ``steps``."""
    from bench import reference_training as ref
    from twinshot.models import build_model
    from twinshot.training.run import available_cores, model_spec

    torch.set_num_threads(threads or config.run.threads or available_cores())
    train_alphabets = sorted({name.split("/")[0] for name in data.train.class_names})
    s = config.sampler
    zip_path = Path(config.data.sources[0])
    if not zip_path.is_absolute():
        zip_path = Path(__file__).resolve().parents[1] / zip_path
    loader = ref.make_loader(zip_path, train_alphabets, n_way=s.n_way, n_shot=s.n_shot, n_query=s.n_query,
                             steps=(repeats + 1) * steps, workers=workers, size=model_spec(config).preprocessing.size[0])
    torch.manual_seed(0)
    model = build_model(model_spec(config))
    durations: list[float] = []
    r = ref.train_steps(model, loader, n_way=s.n_way, n_shot=s.n_shot, n_query=s.n_query, lr=config.optimizer.lr,
                        warmup=0, on_step=lambda step, dt: durations.append(dt))
    per_step = s.n_way * (s.n_shot + s.n_query)
    blocks = [durations[i : i + steps] for i in range(steps, len(durations), steps)]
    rates = [per_step * len(b) / sum(b) for b in blocks if b]
    return {
        "images_per_s": summary(rates),
        "steps_per_repeat": steps,
        "images_per_step": per_step,
        "workers": workers,
        "train_alphabets": len(train_alphabets),
        "first_loss": r["losses"][0] if r["losses"] else None,
        "last_loss": r["losses"][-1] if r["losses"] else None,
        "threads": torch.get_num_threads(),
    }


def model_only_training(config: Any, data: Any, *, steps: int, repeats: int, threads: int | None = None) -> dict[str, Any]:
    """images/s of the model's compute alone: the same forward, loss, backward and Adam step
    on one fixed, already converted episode (no sampling, indexing or augmentation). The
    ceiling any data pipeline can reach with this model on this machine."""
    from twinshot.losses import LOSSES
    from twinshot.training.run import _make_sampler, available_cores

    torch.set_num_threads(threads or config.run.threads or available_cores())
    loss = LOSSES.build(config.loss.name, **config.loss.params)
    model, ctx = _model_and_context(config, data, lambda x: x)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer.lr)
    episode = next(iter(_make_sampler(config, loss.batch_kind, data.train)))
    idx = torch.cat([episode.support, episode.query])
    x = ctx.inputs(idx)
    n_support = episode.support.shape[0]

    def one() -> None:
        optimizer.zero_grad(set_to_none=True)
        e = ctx.encode(model, x)
        value = loss(e[:n_support], episode.support_labels, e[n_support:], episode.query_labels)
        float(value.detach())
        value.backward()
        optimizer.step()

    for _ in range(2):
        one()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            one()
        rates.append(steps * x.shape[0] / (time.perf_counter() - t))
    return {"images_per_s": summary(rates), "steps_per_repeat": steps, "images_per_step": int(x.shape[0])}


def profile_twinshot_step(config: Any, data: Any, steps: int = 5) -> list[dict[str, Any]]:
    """Where a twinshot training step spends its time: the top operators of
    ``torch.profiler`` over ``steps`` steps (self CPU time, ms per step)."""
    from torch.profiler import ProfilerActivity, profile

    from twinshot.losses import LOSSES
    from twinshot.training.batches import step_function
    from twinshot.training.run import _make_augment, _make_sampler

    loss = LOSSES.build(config.loss.name, **config.loss.params)
    generator = torch.Generator().manual_seed(1)
    model, ctx = _model_and_context(config, data, _make_augment(config, generator))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer.lr)
    step = step_function(loss.batch_kind)
    batches = iter(_make_sampler(config, loss.batch_kind, data.train))

    def one() -> None:
        optimizer.zero_grad(set_to_none=True)
        value, _ = step(model, loss, next(batches), ctx)
        value.backward()
        optimizer.step()

    one()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            one()
    rows = []
    for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]:
        rows.append({"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1000.0 / steps, "calls_per_step": e.count / steps})
    return rows


# -- time to accuracy ------------------------------------------------------------------------


def read_time_to_accuracy(run_dir: Path, target_error: float = TARGET_ERROR) -> dict[str, Any]:
    """From a training run's ``epochs.csv`` (``elapsed_s``, ``val_error``): the first epoch
    whose validation error is under ``target_error``, and its elapsed minutes."""
    rows = list(csv.DictReader((run_dir / "epochs.csv").open()))
    best = min((float(r["val_error"]) for r in rows if r.get("val_error") not in ("", None)), default=math.nan)
    out: dict[str, Any] = {"run": str(run_dir), "epochs_logged": len(rows), "best_val_error": best, "target_error": target_error}
    for r in rows:
        if r.get("val_error") not in ("", None) and float(r["val_error"]) < target_error:
            out.update(reached=True, minutes=float(r["elapsed_s"]) / 60.0, epoch=int(r["epoch"]), step=int(r["step"]),
                       val_error=float(r["val_error"]))
            return out
    out.update(reached=False, minutes=float(rows[-1]["elapsed_s"]) / 60.0 if rows else math.nan)
    return out


class _StopAtTarget:
    """Trainer callback: stop (as Ctrl-C would) once validation error is under the target."""

    def __init__(self, target_error: float) -> None:
        self.target_error = target_error

    def on_step_end(self, trainer: Any) -> None:
        pass

    def on_epoch_end(self, trainer: Any) -> None:
        if trainer.state.best_accuracy >= 0 and 1.0 - trainer.state.best_accuracy < self.target_error:
            raise KeyboardInterrupt


def run_time_to_accuracy(config: Any, budget_s: float, run_dir: Path, *, steps_per_epoch: int = 200,
                         target_error: float = TARGET_ERROR, data: Any = None) -> dict[str, Any]:
    """Train the preset (with validation every ``steps_per_epoch`` steps) until the
    within-alphabet 20-way one-shot error is under ``target_error`` or ``budget_s`` is
    spent; then read the time from the run's ``epochs.csv``."""
    from twinshot.training import apply_overrides, train

    config = apply_overrides(config, [f"run.time_budget={float(budget_s)}", "run.epochs=1000", f"run.steps_per_epoch={steps_per_epoch}"])
    train(config, run_dir, progress=False, callbacks=[_StopAtTarget(target_error)], data=data)
    out = read_time_to_accuracy(run_dir, target_error)
    out["budget_s"] = budget_s
    return out


def find_preset_run(candidates: Sequence[Path]) -> Path | None:
    """The most recent candidate directory holding an ``epochs.csv`` of a run of the
    omniglot preset's data and validation protocol (background set, 20-way 1-shot,
    within-alphabet); ``None`` if there is none."""
    import tomllib

    found = []
    for c in candidates:
        if not ((c / "epochs.csv").is_file() and (c / "config.toml").is_file()):
            continue
        try:
            cfg = tomllib.loads((c / "config.toml").read_text())
        except (OSError, ValueError):
            continue
        v = cfg.get("validation", {})
        sources = " ".join(cfg.get("data", {}).get("sources", []))
        if "images_background.zip" in sources and v.get("n_way") == 20 and v.get("n_shot") == 1 and v.get("within_group", False):
            found.append(c)
    return max(found, key=lambda c: (c / "epochs.csv").stat().st_mtime) if found else None
