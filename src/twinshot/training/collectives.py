"""The collectives of data-parallel training (:mod:`twinshot.training.distributed`):
how the global batch is split over ranks, a differentiable gather of the shards'
embeddings and sum over ranks, and :class:`GlobalBatchNorm2d`, BatchNorm over the global
batch (a SyncBatchNorm that also runs on CPU with gloo)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from twinshot.errors import ConfigError


def shard_sizes(batch: int, world_size: int) -> list[int]:
    """Images of a ``batch`` embedded by each rank: contiguous shards whose sizes differ by
    at most one (the first ``batch % world_size`` ranks take one more)."""
    if batch < world_size:
        raise ConfigError(
            f"a global batch of {batch} images cannot be split over {world_size} processes; "
            f"use a larger batch or fewer processes"
        )
    base, extra = divmod(batch, world_size)
    return [base + (r < extra) for r in range(world_size)]


class _GatherBatch(torch.autograd.Function):
    """All ranks' shards ``(n_r, D)`` -> the global ``(sum n_r, D)``, in rank order.

    Backward: every rank computes the same global loss, so the gradient of a shard is the
    sum over ranks of the global gradient's rows for it (an all-reduce, then this rank's
    rows); with DDP's averaging over ranks this gives the global batch's gradient."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:  # type: ignore[override]
        width = max(sizes)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        lo = sum(ctx.sizes[: ctx.rank])
        return total[lo : lo + ctx.sizes[ctx.rank]], None, None


def gather_batch(local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    """Differentiable all-gather of this rank's ``local (sizes[rank], ...)`` rows into the
    global ``(sum(sizes), ...)`` tensor."""
    if local.shape[0] != sizes[rank]:
        raise ValueError(f"rank {rank} has {local.shape[0]} rows, expected {sizes[rank]}")
    return _GatherBatch.apply(local, tuple(sizes), rank)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of each rank's input is the sum of the
    ranks' output gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.contiguous().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over all ranks, differentiably."""
    return _AllReduceSum.apply(x)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch over all
    processes of the group (two differentiable all-reduces per layer: the sum, then the
    centred sum of squares); identical to ``BatchNorm2d`` in eval mode and in one process.
    Unlike ``torch.nn.SyncBatchNorm`` it runs on CPU (gloo) too. Its ``state_dict`` is a
    ``BatchNorm2d``'s, so checkpoints load into the plain model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dtype = x.dtype  # bfloat16 under autocast: the statistics are computed in float32
        x = x.float()
        c = x.shape[1]
        dims = (0, 2, 3)
        local = torch.cat([x.sum(dims), x.new_full((1,), float(x.numel() // c))])
        total = all_reduce_sum(local)
        count = total[c]
        mean = total[:c] / count
        centred = x - mean.view(1, c, 1, 1)
        var = all_reduce_sum(centred.pow(2).sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[operator]
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=m)
        return y.to(dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` (in place) by a :class:`GlobalBatchNorm2d`
    with the same parameters and statistics; returns ``module``."""
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
