"""Evaluation tests run torch on one thread: their many small operations are slower on two
threads when other processes share the CPU (OpenMP workers wait for each other)."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
