"""gather_matmul: the reference semantics every kernel must match."""

from __future__ import annotations

import pytest
import torch

from kernels.reference import gather_matmul


@pytest.mark.parametrize("batch,slots_in_pool", [(1, 1), (5, 3), (16, 16)])
def test_gather_matmul_equals_a_loop_over_utterances(batch, slots_in_pool):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 7, 12, generator=g)
    pool = torch.randn(slots_in_pool, 20, 12, generator=g)
    slots = torch.randint(-1, slots_in_pool, (batch,), generator=g)
    out = gather_matmul(x, pool, slots)
    for b in range(batch):
        expected = x[b] @ pool[slots[b]].T if slots[b] >= 0 else torch.zeros(7, 20)
        torch.testing.assert_close(out[b], expected)
