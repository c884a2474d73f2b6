"""A GRU cell whose state change passes through a fixed matrix: what a hidden-state direction swap
(:func:`policylens.edit.swap.swap_directions`) leaves in an agent, so that a swapped agent saves and loads like
any other (the matrix is a buffer beside the weights; the checkpoint's ``edits`` record says to rebuild it).
"""
from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

KIND = "hx_swap"  # the edits record's kind
M = TypeVar("M", bound=nn.Module)


class SwappedGRUCell(nn.GRUCell):
    """A GRU cell whose state change is rewritten: ``h' = h + (GRU(x, h) - h) @ swap``; ``swap`` (C, C)."""

    swap: torch.Tensor  # (C, C) buffer

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__(input_size, hidden_size, bias)
        self.register_buffer("swap", torch.eye(hidden_size))

    @classmethod
    def from_cell(cls, cell: nn.GRUCell, matrix: "torch.Tensor | None" = None) -> "SwappedGRUCell":
        new = cls(cell.input_size, cell.hidden_size, cell.bias).to(cell.weight_ih.device, cell.weight_ih.dtype)
        new.load_state_dict(cell.state_dict(), strict=False)
        if matrix is not None:
            new.swap.copy_(matrix)
        return new

    def forward(self, x: torch.Tensor, h: "torch.Tensor | None" = None) -> torch.Tensor:
        if h is None:
            h = torch.zeros(x.shape[0], self.hidden_size, device=x.device, dtype=x.dtype)
        new = super().forward(x, h)  # (B, C)
        return h + (new - h) @ self.swap.to(new.dtype)


def restore_swap(agent: M, config: dict) -> M:
    """Before loading weights: give ``agent`` the swapped GRU cell its checkpoint's ``edits`` record asks for."""
    gru = getattr(agent, "gru", None)
    if any(e.get("kind") == KIND for e in config.get("edits", [])) and isinstance(gru, nn.GRUCell):
        agent.gru = SwappedGRUCell.from_cell(gru)
    return agent
