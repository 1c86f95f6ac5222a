"""HRA controller and the per-batch head layout (families: adapters_store/families.py).

Equations (docs/architecture.md), per frame, after backbone layer l:
    h_l = ReLU(W_c y_l + u * h_{l-1} + b_c)      shared controller, h_0 = 0
    x_l = y_l + Head_task(h_l)                    same head at every layer
Head families:
    linear:   Head(h) = V h                       V  [D, d_c]
    ffn:      Head(h) = V2 ReLU(V1 h)             V1 [r, d_c], V2 [D, r]
    residual: x_l = y_l + U_l ReLU(D_l y_l)       baseline, no controller;
              D_l [r, D], U_l [D, r] for each layer (the classic adapter)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from adapters_store.families import FAMILIES, FamilyBatch, HeadInput
from adapters_store.head_format import HeadType


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


@dataclass
class HeadBatch:
    """Which head each utterance of a fused batch uses: one FamilyBatch per family present.

    Pools hold the weights of the heads present; slots index into them, -1
    for utterances that use no head of that family. Built once per batch and
    handed down to the model and kernels; no per-utterance weight copies.
    """

    batch_size: int
    families: dict[HeadType, FamilyBatch] = field(default_factory=dict)

    @property
    def uses_controller(self) -> bool:
        return any(FAMILIES[t].reads == HeadInput.CONTROLLER for t in self.families)

    @property
    def uses_residual(self) -> bool:
        return any(FAMILIES[t].reads == HeadInput.LAYER for t in self.families)

    def slots(self, head_type: HeadType) -> torch.Tensor | None:
        """[B] slot per utterance for one family, or None if no utterance uses it."""
        part = self.families.get(HeadType(head_type))
        return None if part is None else part.slots

    @classmethod
    def from_heads(
        cls, heads: list[tuple[HeadType | str, Mapping[str, torch.Tensor]] | None]
    ) -> HeadBatch:
        """One (type, tensors) or None per utterance; identical heads share a slot.

        Heads of one family but different ranks are zero-padded to the largest.
        """
        pools: dict[HeadType, list[Mapping[str, torch.Tensor]]] = {t: [] for t in HeadType}
        slots = {t: [-1] * len(heads) for t in HeadType}
        seen: dict[int, int] = {}
        for b, head in enumerate(heads):
            if head is None:
                continue
            head_type, tensors = HeadType(head[0]), head[1]
            key = id(tensors)
            if key not in seen:
                seen[key] = len(pools[head_type])
                pools[head_type].append(tensors)
            slots[head_type][b] = seen[key]
        families = {
            t: FamilyBatch(FAMILIES[t].stack(entries), torch.tensor(slots[t]))
            for t, entries in pools.items()
            if entries
        }
        return cls(len(heads), families)

    @classmethod
    def from_pools(
        cls, head_type: HeadType, pools: Mapping[str, torch.Tensor], slots: torch.Tensor
    ) -> HeadBatch:
        """All utterances use heads of one type, already stacked in pools."""
        return cls(int(slots.shape[0]), {HeadType(head_type): FamilyBatch(dict(pools), slots)})

    def to(self, device: torch.device | str) -> HeadBatch:
        return HeadBatch(self.batch_size, {t: f.to(device) for t, f in self.families.items()})


def controller_head_delta(h: torch.Tensor, heads: HeadBatch):
    """Sum of the controller-fed heads' outputs (linear, FFN); each utterance uses at most one."""
    delta = None  # not 0: `0 + out` would be one more full pass over [B, T, D]
    for head_type, family in FAMILIES.items():  # fixed order: the same sum every batch
        part = heads.families.get(head_type)
        if part is not None and family.reads == HeadInput.CONTROLLER:
            out = family.apply(h, 0, part)
            delta = out if delta is None else delta + out
    return delta


def residual_delta(y: torch.Tensor, layer: int, heads: HeadBatch):
    """Sum of the layer-fed heads' outputs (residual adapters) at `layer`."""
    delta = None
    for head_type, family in FAMILIES.items():
        part = heads.families.get(head_type)
        if part is not None and family.reads == HeadInput.LAYER:
            out = family.apply(y, layer, part)
            delta = out if delta is None else delta + out
    return delta
