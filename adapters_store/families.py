"""Head families: one object per kind of task head (docs/architecture.md).

Each family knows, in one place:
    tensors   their names and shapes for a model's dims and a head's rank
    init      which of them start at zero (output side: a new head is a no-op)
    padding   how a head of rank r sits in a pool slot of rank R >= r
    apply     what it adds: a controller delta (from h_l) or a residual delta (from y_l)

    linear:   Head(h) = V h                       V  [D, d_c]
    ffn:      Head(h) = V2 ReLU(V1 h)             V1 [r, d_c], V2 [D, r]
    residual: x_l = y_l + U_l ReLU(D_l y_l)       down [L, r, D], up [L, D, r]

Padding is zeros along the rank axis: the padded units compute ReLU(0) * 0 = 0,
so a padded head's output is exactly the unpadded one's. The store validates
uploads against these shapes through HeadSpec.shapes, so head shapes are
defined here, on the model side, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

import torch

from adapters_store.head_format import HeadSpec, HeadType
from kernels import REFERENCE, HeadKernel

Shapes = dict[str, tuple[int, ...]]


class HeadInput(StrEnum):
    """What a family's head reads, hence where the model adds its output."""

    CONTROLLER = "controller"  # h_l, the shared controller's state
    LAYER = "layer"  # y_l, the backbone layer's output (no controller)


@dataclass(frozen=True)
class ModelDims:
    hidden_dim: int  # D
    controller_dim: int  # d_c
    num_layers: int  # L


@dataclass(frozen=True)
class FamilyBatch:
    """One family's part of a fused batch: its weight pools and who uses which slot."""

    pools: Mapping[str, torch.Tensor]  # tensor name -> [S, *shape at the pool's rank]
    slots: torch.Tensor  # [B], -1 where an utterance uses no head of this family
    kernel: HeadKernel = REFERENCE  # the gather-matmul this device runs

    def to(self, device: torch.device | str) -> FamilyBatch:
        pools = {k: v.to(device) for k, v in self.pools.items()}
        return FamilyBatch(pools, self.slots.to(device), self.kernel)


class HeadFamily:
    """Base of the three families; subclasses state shapes, zero side and `apply`."""

    kind: HeadType
    reads: HeadInput
    zero_init: frozenset[str]  # output-side tensors: zero at init, so a new head is a no-op
    has_rank: bool = True  # False: shapes do not depend on rank (linear)

    def shapes(self, dims: ModelDims, rank: int) -> Shapes:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, layer: int, batch: FamilyBatch) -> torch.Tensor:
        """x [B, T, D or d_c] -> this family's delta [B, T, D] (zero where slot is -1)."""
        raise NotImplementedError

    def init(
        self, dims: ModelDims, rank: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        return self.init_tensors(self.shapes(dims, rank), generator)

    def init_tensors(
        self, shapes: Mapping[str, tuple[int, ...]], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Input side random (scaled by fan-in), output side zero: a new head is a no-op."""
        tensors = {}
        for name, shape in shapes.items():
            if name in self.zero_init:
                tensors[name] = torch.zeros(shape)
            else:
                tensors[name] = torch.randn(shape, generator=generator) / shape[-1] ** 0.5
        return tensors

    def pool_shapes(self, dims: ModelDims, max_rank: int) -> Shapes:
        """Shape of one slot in a pool that holds heads of rank up to `max_rank`."""
        return self.shapes(dims, max_rank if self.has_rank else 0)

    def fits(self, tensors: Mapping[str, torch.Tensor], rank: int, dims: ModelDims) -> str | None:
        """Why these tensors are not a head of this family at `rank`, or None if they are."""
        expected = self.shapes(dims, rank)
        if set(tensors) != set(expected):
            return f"{self.kind.value} head needs tensors {sorted(expected)}, got {sorted(tensors)}"
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                return f"tensor {name} has shape {tuple(tensors[name].shape)}, expected {shape}"
        return None

    def write_padded(self, slot: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor]):
        """Copy a head into one pool slot (views [*pool shape]), zeros beyond its rank."""
        for name, tensor in tensors.items():
            target = slot[name]
            target.zero_()
            target[tuple(slice(0, n) for n in tensor.shape)].copy_(tensor, non_blocking=True)

    def stack(self, heads: list[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Heads of this family as pools [S, ...], zero-padded to the largest rank among them."""
        pools = {}
        for name in heads[0]:
            tensors = [h[name] for h in heads]
            shape = tuple(max(sizes) for sizes in zip(*(t.shape for t in tensors)))
            if all(tuple(t.shape) == shape for t in tensors):
                pools[name] = torch.stack(tensors)
                continue
            pools[name] = tensors[0].new_zeros((len(tensors), *shape))
            for i, tensor in enumerate(tensors):
                self.write_padded({name: pools[name][i]}, {name: tensor})
        return pools

    def padded(self, tensors: Mapping[str, torch.Tensor], max_rank: int, dims: ModelDims):
        """The head as a pool slot of `max_rank` holds it (for tests and references)."""
        slot = {n: torch.zeros(s) for n, s in self.pool_shapes(dims, max_rank).items()}
        self.write_padded(slot, tensors)
        return slot


class LinearHead(HeadFamily):
    kind = HeadType.LINEAR
    reads = HeadInput.CONTROLLER
    zero_init = frozenset({"V"})
    has_rank = False

    def shapes(self, dims: ModelDims, rank: int) -> Shapes:
        return {"V": (dims.hidden_dim, dims.controller_dim)}

    def apply(self, x: torch.Tensor, layer: int, batch: FamilyBatch) -> torch.Tensor:
        return batch.kernel(x, batch.pools["V"], batch.slots)


class FfnHead(HeadFamily):
    kind = HeadType.FFN
    reads = HeadInput.CONTROLLER
    zero_init = frozenset({"V2"})

    def shapes(self, dims: ModelDims, rank: int) -> Shapes:
        return {"V1": (rank, dims.controller_dim), "V2": (dims.hidden_dim, rank)}

    def apply(self, x: torch.Tensor, layer: int, batch: FamilyBatch) -> torch.Tensor:
        hidden = torch.relu(batch.kernel(x, batch.pools["V1"], batch.slots))
        return batch.kernel(hidden, batch.pools["V2"], batch.slots)


class ResidualHead(HeadFamily):
    kind = HeadType.RESIDUAL
    reads = HeadInput.LAYER
    zero_init = frozenset({"up"})

    def shapes(self, dims: ModelDims, rank: int) -> Shapes:
        layers, hidden = dims.num_layers, dims.hidden_dim
        return {"down": (layers, rank, hidden), "up": (layers, hidden, rank)}

    def apply(self, x: torch.Tensor, layer: int, batch: FamilyBatch) -> torch.Tensor:
        down = batch.pools["down"][:, layer]  # [S, r, D]
        up = batch.pools["up"][:, layer]  # [S, D, r]
        hidden = torch.relu(batch.kernel(x, down, batch.slots))
        return batch.kernel(hidden, up, batch.slots)


# In HeadType order: deltas are summed in this order, always.
FAMILIES: Mapping[HeadType, HeadFamily] = MappingProxyType(
    {f.kind: f for f in (LinearHead(), FfnHead(), ResidualHead())}
)


def family(kind: str | HeadType) -> HeadFamily:
    """The family object of a head type (ValueError for an unknown one)."""
    return FAMILIES[HeadType(kind)]


def head_shapes(
    head_type: str | HeadType, hidden_dim: int, controller_dim: int, rank: int, num_layers: int
) -> Shapes:
    """Tensor names and shapes of one head."""
    return family(head_type).shapes(ModelDims(hidden_dim, controller_dim, num_layers), rank)


def init_head(
    head_type: str | HeadType, dims: ModelDims, rank: int, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    return family(head_type).init(dims, rank, generator)


def dims_of(spec: HeadSpec) -> ModelDims:
    return ModelDims(spec.hidden_dim, spec.controller_dim, spec.num_layers)


@dataclass(frozen=True)
class _ShapesOf:
    """HeadSpec.shapes for one model: (head type, rank) -> tensor shapes. Picklable."""

    dims: ModelDims

    def __call__(self, head_type: str, rank: int) -> Shapes:
        return family(head_type).shapes(self.dims, rank)


def make_head_spec(
    fingerprint: str,
    hidden_dim: int,
    controller_dim: int,
    num_layers: int,
    max_ranks: Mapping[str, int] | None = None,
) -> HeadSpec:
    """What the store validates uploads against: this model's shapes and the pool's ranks."""
    dims = ModelDims(hidden_dim, controller_dim, num_layers)
    return HeadSpec(
        fingerprint=fingerprint,
        hidden_dim=hidden_dim,
        controller_dim=controller_dim,
        num_layers=num_layers,
        shapes=_ShapesOf(dims),
        max_ranks=dict(max_ranks or {}),
    )
