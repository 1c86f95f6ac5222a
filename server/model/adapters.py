"""HRA controller, task-head families, and the per-batch head layout.

Equations (DESIGN.md section 1), per frame, after backbone layer l:
    h_l = ReLU(W_c y_l + u * h_{l-1} + b_c)      shared controller, h_0 = 0
    x_l = y_l + Head_task(h_l)                    same head at every layer
Head families:
    linear:   Head(h) = V h                       V  [D, d_c]
    ffn:      Head(h) = V2 ReLU(V1 h)             V1 [r, d_c], V2 [D, r]
    residual: x_l = y_l + U_l ReLU(D_l y_l)       baseline, no controller;
              D_l [r, D], U_l [D, r] for each layer (the classic adapter)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapters_store.head_format import HeadType
from kernels import gather_matmul


def init_head(shapes: dict[str, tuple[int, ...]], generator: torch.Generator | None = None):
    """Input-side matrices random, output-side zero: a new head starts as a no-op."""
    tensors = {}
    for name, shape in shapes.items():
        if name in ("V", "V2", "up"):
            tensors[name] = torch.zeros(shape)
        else:
            fan_in = shape[-1]
            tensors[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return tensors


class Controller(nn.Module):
    """IndRNN over depth, shared by all tasks and layers."""

    def __init__(self, hidden_dim: int, controller_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_dim, controller_dim)  # W_c, b_c
        self.recurrence = nn.Parameter(torch.full((controller_dim,), 0.5))  # u

    @property
    def dim(self) -> int:
        return self.proj.out_features

    def step(self, y: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(y) + self.recurrence * h_prev)


# Which HeadBatch field holds each tensor of each head type.
_POOL_FIELDS = {
    HeadType.LINEAR: (("V", "linear_pool"),),
    HeadType.FFN: (("V1", "ffn_in_pool"), ("V2", "ffn_out_pool")),
    HeadType.RESIDUAL: (("down", "residual_down_pool"), ("up", "residual_up_pool")),
}


def pool_fields(head_type: HeadType) -> tuple[tuple[str, str], ...]:
    """(tensor name, HeadBatch field) pairs of one head type."""
    return _POOL_FIELDS[head_type]


@dataclass
class HeadBatch:
    """Which head each utterance of a fused batch uses (one entry per family).

    Pools hold the weights of the heads present; slots index into them, -1
    for utterances that use no head of that family. Built once per batch and
    handed down to the model and kernels; no per-utterance weight copies.
    """

    batch_size: int
    linear_pool: torch.Tensor | None = None  # [S, D, d_c]
    linear_slots: torch.Tensor | None = None  # [B]
    ffn_in_pool: torch.Tensor | None = None  # [S, r, d_c]
    ffn_out_pool: torch.Tensor | None = None  # [S, D, r]
    ffn_slots: torch.Tensor | None = None  # [B]
    residual_down_pool: torch.Tensor | None = None  # [S, L, r, D]
    residual_up_pool: torch.Tensor | None = None  # [S, L, D, r]
    residual_slots: torch.Tensor | None = None  # [B]

    @property
    def uses_controller(self) -> bool:
        return self.linear_slots is not None or self.ffn_slots is not None

    @classmethod
    def from_heads(cls, heads: list[tuple[HeadType, dict[str, torch.Tensor]] | None]) -> HeadBatch:
        """One (type, tensors) or None per utterance; identical heads share a slot."""
        pools: dict[HeadType, list[dict[str, torch.Tensor]]] = {t: [] for t in HeadType}
        slots = {t: [-1] * len(heads) for t in HeadType}
        seen: dict[int, int] = {}
        for b, head in enumerate(heads):
            if head is None:
                continue
            head_type, tensors = head
            key = id(tensors)
            if key not in seen:
                seen[key] = len(pools[head_type])
                pools[head_type].append(tensors)
            slots[head_type][b] = seen[key]
        batch = cls(batch_size=len(heads))
        for head_type, entries in pools.items():
            if not entries:
                continue
            for tensor_name, field in _POOL_FIELDS[head_type]:
                setattr(batch, field, torch.stack([e[tensor_name] for e in entries]))
            setattr(batch, f"{head_type.value}_slots", torch.tensor(slots[head_type]))
        return batch

    @classmethod
    def from_pools(
        cls, head_type: HeadType, pools: dict[str, torch.Tensor], slots: torch.Tensor
    ) -> HeadBatch:
        """All utterances use heads of one type, already stacked in pools."""
        batch = cls(batch_size=int(slots.shape[0]))
        for tensor_name, field in _POOL_FIELDS[head_type]:
            setattr(batch, field, pools[tensor_name])
        setattr(batch, f"{head_type.value}_slots", slots)
        return batch

    def to(self, device: torch.device | str) -> HeadBatch:
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()
        }
        return HeadBatch(**moved)


def controller_head_delta(h: torch.Tensor, heads: HeadBatch) -> torch.Tensor:
    """Sum of the linear and FFN head outputs; each utterance uses at most one."""
    delta = 0
    if heads.linear_slots is not None:
        delta = delta + gather_matmul(h, heads.linear_pool, heads.linear_slots)
    if heads.ffn_slots is not None:
        hidden = torch.relu(gather_matmul(h, heads.ffn_in_pool, heads.ffn_slots))
        delta = delta + gather_matmul(hidden, heads.ffn_out_pool, heads.ffn_slots)
    return delta


def residual_delta(y: torch.Tensor, layer: int, heads: HeadBatch) -> torch.Tensor:
    down = heads.residual_down_pool[:, layer]  # [S, r, D]
    up = heads.residual_up_pool[:, layer]  # [S, D, r]
    hidden = torch.relu(gather_matmul(y, down, heads.residual_slots))
    return gather_matmul(hidden, up, heads.residual_slots)
