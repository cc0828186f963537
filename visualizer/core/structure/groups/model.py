"""The records of coupled groups: a :class:`Member` (a slice of one tensor), a
:class:`ChannelGroup` (units removed together) and the :class:`StructureResult` of a search."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    """A slice of one tensor that belongs to a group: ``indices`` along ``dim`` of ``param``;
    ``units[i]`` is the group unit (channel, hidden unit, head) that ``indices[i]`` belongs to.
    ``buffer`` marks running statistics (they shrink with the group but are never masked)."""

    param: str
    dim: int
    indices: tuple[int, ...]
    units: tuple[int, ...]
    role: str  # "out" (produces the units), "in" (reads them), "norm", "gate", "param"
    buffer: bool = False

    def to_json(self) -> dict:
        return {"param": self.param, "dim": self.dim, "indices": list(self.indices),
                "units": list(self.units), "role": self.role, "buffer": self.buffer}


@dataclass
class ChannelGroup:
    """Units that must be removed together across all members (the group G_k of group lasso, Yuan & Lin 2006)."""

    id: int
    kind: str  # "channel", "lstm-unit", "head"
    root: str  # the module that produces the units
    size: int  # number of units
    members: list[Member]
    prunable: bool = True
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.root} ({self.kind}s: {self.size})"

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "root": self.root, "size": self.size,
                "prunable": self.prunable, "reason": self.reason,
                "members": [m.to_json() for m in self.members]}

    def producers(self) -> list[Member]:
        return [m for m in self.members if m.role == "out" and not m.buffer]

    def consumers(self) -> list[Member]:
        return [m for m in self.members if m.role == "in"]


@dataclass
class StructureResult:
    groups: list[ChannelGroup]
    notices: list[str] = field(default_factory=list)
    output_layers: list[str] = field(default_factory=list)

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]
