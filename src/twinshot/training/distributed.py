"""Data-parallel training with ``torch.distributed``: the same trainer, one process per
CPU socket/GPU, under :class:`~torch.nn.parallel.DistributedDataParallel`.

How a step is split (``W`` processes, rank ``r``):

* every process draws the same **global batch** from the same sampler (same seed), so a
  run does not depend on how it is split; each converts and augments the whole batch
  (the augmentation generator stays identical on every rank, and each image gets the
  distortion it would get in one process), then embeds only its shard, images
  ``[lo_r, hi_r)`` of ``B`` (:func:`~twinshot.training.collectives.shard_sizes`);
* the shards' embeddings are gathered, differentiably
  (:func:`~twinshot.training.collectives.gather_batch`), so every rank computes the loss
  of the whole batch: losses that mine or compare within the batch (batch-hard
  triplets, prototypes of an episode) see exactly what one process sees;
* BatchNorm layers become :class:`~twinshot.training.collectives.GlobalBatchNorm2d`,
  whose training statistics are those of the global batch (a SyncBatchNorm that also
  runs on CPU with gloo);
* DDP averages the gradients. With the gather's backward summing over ranks, the result
  is the gradient of the global batch's loss, so 1 and W processes take the same steps up
  to float rounding (tests/training/test_distributed.py).

Dropout masks are the only per-rank randomness: rank 0 keeps the run's torch seed and rank
``r > 0`` a seed derived from (seed, r); every rank's generator state is saved with the
run, so ``--resume`` is exact for the same world size.

Only rank 0 touches the run directory: it checks it, reads the resumed state and
broadcasts it (:meth:`DistContext.from_rank0`), writes checkpoints, metrics, epochs.csv,
the plot and summary, shows progress and runs validation (the others wait for its
result). Stops (time budget, Ctrl-C/SIGTERM) are agreed by all ranks after every step.

The process group is started by the entry point (:func:`distributed_session`, from a
:class:`DistributedConfig` that the CLI builds from torchrun's variables); the library
reads rank and world size from ``torch.distributed`` (:meth:`DistContext.current`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import inspect
import signal
import socket
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from twinshot.errors import ConfigError, TwinshotError
from twinshot.training.batches import BatchContext, StepFunction
from twinshot.training.collectives import convert_batchnorm, gather_batch, shard_sizes
from twinshot.training.trainer import Trainer

#: Values of :attr:`DistributedConfig.backend`.
BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedConfig:
    """How to join a process group (what torchrun tells each process).

    Attributes:
        rank: this process's rank, ``0..world_size-1``.
        world_size: processes in the run, all nodes together.
        local_rank: rank on this node (the GPU index with nccl).
        local_world_size: processes on this node.
        backend: ``"gloo"`` (CPU), ``"nccl"`` (GPU) or ``"auto"``: nccl where CUDA is
            available, else gloo.
        init_method: torch's rendezvous URL; ``"env://"`` under torchrun (its store's
            address is in the environment it sets).
        timeout_s: how long a collective waits for the other ranks before failing.
    """

    rank: int
    world_size: int
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = "auto"
    init_method: str = "env://"
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"distributed: rank {self.rank} is not in a world of {self.world_size} processes")
        if self.backend not in BACKENDS:
            raise ConfigError(f"distributed backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    @classmethod
    def from_torchrun(cls, environ: Mapping[str, str], *, backend: str = "auto") -> "DistributedConfig | None":
        """The config of a process started by torchrun, from the variables it sets
        (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``); ``None`` when
        they are absent (a plain, single-process run). The caller passes the environment."""
        if "RANK" not in environ or "WORLD_SIZE" not in environ:
            return None
        try:
            rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
            local_rank = int(environ.get("LOCAL_RANK", "0"))
            local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            raise ConfigError("torchrun's RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE must be integers") from None
        return cls(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world, backend=backend)

    def resolved_backend(self) -> str:
        if self.backend == "auto":
            return "nccl" if torch.cuda.is_available() else "gloo"
        return self.backend


@contextlib.contextmanager
def distributed_session(config: DistributedConfig | None) -> Iterator[DistributedConfig | None]:
    """Join the process group of ``config`` for the ``with`` block (nothing when ``None``
    or when a group is already running); at the end, wait for every rank and leave it."""
    if config is None or (dist.is_available() and dist.is_initialized()):
        yield config
        return
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise TwinshotError("this torch has no torch.distributed; cannot train with several processes")
    backend = config.resolved_backend()
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError("distributed backend nccl needs CUDA, which this torch/machine lacks; use gloo")
        torch.cuda.set_device(config.local_rank)
    try:
        dist.init_process_group(
            backend, init_method=config.init_method, rank=config.rank, world_size=config.world_size,
            timeout=datetime.timedelta(seconds=config.timeout_s),
        )
    except (RuntimeError, ValueError) as exc:
        raise TwinshotError(f"cannot join the process group ({config.init_method}): {str(exc).splitlines()[0]}") from None
    ok = False
    try:
        yield config
        ok = True
    finally:
        if ok:
            dist.barrier()
        dist.destroy_process_group()


@dataclass
class ShardedBatchContext(BatchContext):
    """A :class:`BatchContext` whose :meth:`embed` embeds this rank's shard of the global
    batch and returns the gathered global embeddings ``(B, D)``.

    Attributes:
        rank, world_size: this process in the group.
        device: where the encoder runs (the images stay in CPU memory).
    """

    rank: int = 0
    world_size: int = 1
    device: Any = "cpu"

    def embed(self, model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, D)`` of the images ``idx (B,)`` of the global batch."""
        sizes = shard_sizes(int(idx.shape[0]), self.world_size)
        lo = sum(sizes[: self.rank])
        x = self.inputs(idx.cpu())[lo : lo + sizes[self.rank]].to(self.device)
        return gather_batch(self.encode(model, x), sizes, self.rank)


class _StepModule(nn.Module):
    """The model and the loss as one module whose ``forward(batch)`` is a training step,
    so that DDP sees every parameter a step uses (the loss's too)."""

    def __init__(self, model: nn.Module, loss: nn.Module, step_fn: StepFunction, context: BatchContext, device: Any) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.step_fn = step_fn
        self.context = context
        self.device = torch.device(device)
        self.n_images = 0

    def forward(self, batch: Any) -> torch.Tensor:
        if self.device.type != "cpu":
            batch = _to_device(batch, self.device)
        value, self.n_images = self.step_fn(self.model, self.loss, batch, self.context)
        return value


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple):
        items = [_to_device(b, device) for b in batch]
        return type(batch)(*items) if hasattr(batch, "_fields") else tuple(items)
    return batch


def _rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps ``seed``; other ranks get a seed derived from (seed, rank)."""
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"twinshot-ddp:{seed}:{rank}".encode()).digest()[:7], "little")


class _NullLogger:
    """The metrics logger of ranks other than 0: writes nothing."""

    def log_step(self, **values: Any) -> None:
        pass

    def log_epoch(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class DistContext:
    """This process's place in a running process group (read from ``torch.distributed``).

    Attributes:
        rank, world_size: of the group.
        local_world_size: processes on this machine (by host name).
        backend: ``"gloo"`` or ``"nccl"``.
        device: where this rank computes (``cuda:LOCAL`` with nccl, else cpu).
    """

    rank: int
    world_size: int
    local_world_size: int
    backend: str
    device: torch.device

    @classmethod
    def current(cls) -> "DistContext | None":
        """The running group's context, or ``None`` outside one (a collective: every rank
        calls it at the same point)."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        backend = str(dist.get_backend())
        device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        world = dist.get_world_size()
        hosts: list[Any] = [None] * world
        dist.all_gather_object(hosts, socket.gethostname())
        return cls(dist.get_rank(), world, max(1, hosts.count(socket.gethostname())), backend, device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def threads(self, cores: int) -> int:
        """Threads per process when the config asks for all cores: this machine's cores
        shared by its processes."""
        return max(1, cores // self.local_world_size)

    def describe(self) -> dict[str, Any]:
        return {"world_size": self.world_size, "backend": self.backend}

    def from_rank0(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 only and return its result on every rank; a
        :class:`TwinshotError` it raises is raised on every rank."""
        payload: list[Any] = [None]
        failure: BaseException | None = None
        if self.is_main:
            try:
                payload[0] = ("ok", fn())
            except TwinshotError as exc:
                payload[0] = ("error", exc)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the others
                payload[0] = ("crash", f"rank 0 failed: {type(exc).__name__}: {exc}")
                failure = exc
        dist.broadcast_object_list(payload, src=0, device=self.device if self.device.type != "cpu" else None)
        kind, value = payload[0]
        if failure is not None:
            raise failure
        if kind == "error":
            raise value
        if kind == "crash":
            raise TwinshotError(value)
        return value

    def barrier(self) -> None:
        dist.barrier()

    def prepare_model(self, model: nn.Module, seed: int) -> nn.Module:
        """Global-batch BatchNorm, the model on this rank's device, and this rank's torch
        seed (for dropout). Call after building the model from the run's seed (identical
        on every rank) and before building the optimiser."""
        model = convert_batchnorm(model).to(self.device)
        torch.manual_seed(_rank_seed(seed, self.rank))
        return model

    def wrap_step(
        self, model: nn.Module, loss: nn.Module, context: BatchContext, step_fn: StepFunction
    ) -> tuple[ShardedBatchContext, StepFunction]:
        """The sharded context and a step function running ``step_fn`` under DDP."""
        from torch.nn.parallel import DistributedDataParallel

        values = {f.name: getattr(context, f.name) for f in fields(BatchContext)}
        values["labels"] = context.labels.to(self.device)
        sharded = ShardedBatchContext(**values, rank=self.rank, world_size=self.world_size, device=self.device)
        module = _StepModule(model, loss.to(self.device), step_fn, sharded, self.device)
        # The BatchNorm statistics are global, hence equal on every rank: no buffer sync
        # before each forward (the keyword was renamed in torch 2.13).
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
            else {"broadcast_buffers": False}
        )
        ddp = DistributedDataParallel(
            module,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            static_graph=True,  # the same parameters every step; some (an unused head) get no gradient
            **no_buffer_sync,
        )

        def step(_model: nn.Module, _loss: nn.Module, batch: Any, _ctx: BatchContext) -> tuple[torch.Tensor, int]:
            value = ddp(batch)
            return value, module.n_images

        return sharded, step

    def validate_on_rank0(self, validate: Callable[[nn.Module], tuple[float, float]]) -> Callable[[nn.Module], tuple[float, float]]:
        """``validate`` run by rank 0 alone, its ``(accuracy, ci95)`` broadcast to all."""

        def run(model: nn.Module) -> tuple[float, float]:
            out = torch.zeros(2, dtype=torch.float64, device=self.device)
            if self.is_main:
                accuracy, ci95 = validate(model)
                out = torch.tensor([accuracy, ci95], dtype=torch.float64, device=self.device)
            dist.broadcast(out, src=0)
            return float(out[0]), float(out[1])

        return run

    def trainer(self, *args: Any, **kwargs: Any) -> "DistributedTrainer":
        return DistributedTrainer(*args, dist_context=self, **kwargs)


class DistributedTrainer(Trainer):
    """The :class:`Trainer` of one rank: only rank 0 writes (checkpoints, metrics), all
    ranks agree after each step whether to stop (time budget, Ctrl-C or SIGTERM on any
    rank), and the saved state holds every rank's torch generator."""

    def __init__(self, *args: Any, dist_context: DistContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dist = dist_context
        self._stop_budget = False
        self._rank_rng: list[torch.Tensor] | None = None
        self.callbacks.append(self)  # on_step_end: agree on stopping, after the user's callbacks

    # -- stopping, agreed after every step
    def on_step_end(self, trainer: Trainer) -> None:
        flags = torch.tensor(
            [int(self._interrupt_requested), int(Trainer._budget_spent(self))], dtype=torch.int32, device=self.dist.device
        )
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self._interrupt_requested = bool(flags[0])
        self._stop_budget = bool(flags[1])

    def _budget_spent(self) -> bool:
        return self._stop_budget

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupt_requested:  # a second signal: leave now, without saving (the others would wait)
            raise SystemExit(130)
        super()._on_sigint(signum, frame)

    def fit(self, *, resume_step: int | None = None) -> Any:
        """:meth:`Trainer.fit`; SIGTERM (what torchrun sends when it stops a run) is
        handled as Ctrl-C."""
        if threading.current_thread() is not threading.main_thread():
            return super().fit(resume_step=resume_step)
        previous = signal.signal(signal.SIGTERM, self._on_sigint)
        try:
            return super().fit(resume_step=resume_step)
        finally:
            signal.signal(signal.SIGTERM, previous)

    # -- only rank 0 writes
    def _open_logger(self, resume_step: int | None) -> Any:
        return super()._open_logger(resume_step) if self.dist.is_main else _NullLogger()

    def save(self, name: str, *, with_state: bool) -> Path:
        if with_state:  # a collective: every rank saves at the same points
            states: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(states, torch.get_rng_state())
            self._rank_rng = states
        if self.dist.is_main:
            return super().save(name, with_state=with_state)
        self.state.elapsed = self.elapsed()
        return self.run_dir / name

    def state_dict(self) -> dict[str, Any]:
        data = super().state_dict()
        data["distributed"] = {"world_size": self.dist.world_size, "torch_rng_ranks": self._rank_rng}
        return data

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore the state; each rank takes back its own torch generator when the run
        was saved with this world size (otherwise ranks > 0 reseed from the step: the
        weights continue exactly, the dropout masks do not)."""
        super().load_state_dict(data)
        saved = data.get("distributed") or {}
        rngs = saved.get("torch_rng_ranks")
        if rngs is not None and saved.get("world_size") == self.dist.world_size:
            torch.set_rng_state(rngs[self.dist.rank])
        elif not self.dist.is_main:
            torch.manual_seed(_rank_seed(self.state.step, self.dist.rank))
