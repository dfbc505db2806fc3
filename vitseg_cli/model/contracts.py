"""What every family's built module offers the segmentor, the optimiser and the inference engine (torch-free).

`typing.Protocol`s, checked structurally (`isinstance(module, Backbone)` tests the members are there); the shapes
and meanings are in the docstrings.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable


@runtime_checkable
class Backbone(Protocol):
    """Takes a normalized (B, 3, H, W) batch, H and W multiples of `size_divisor` (or exactly `fixed_input_size`
    when that is set), and returns four features [f1, f2, f3, f4] at strides `out_strides` (4, 8, 16, 32) with
    `out_channels` channels."""

    out_channels: list[int]  # four ints
    out_strides: tuple[int, ...]  # (4, 8, 16, 32)
    size_divisor: int  # inputs are padded to a multiple of it
    fixed_input_size: Optional[tuple[int, int]]  # (H, W) it exclusively accepts, or None
    num_layers: int  # the layer-decay id of the top layer (heads and adapter modules get it)

    def layer_id(self, name: str) -> int:
        """The layer-decay id of one of its parameter names, as the official LayerDecayOptimizerConstructor numbers
        layers."""

    def no_weight_decay(self, name: str, param: Any) -> bool:
        """Whether that parameter is exempt from weight decay."""

    def forward(self, x: Any) -> list[Any]:
        ...


@runtime_checkable
class Head(Protocol):
    """Takes the four backbone features and returns per-class scores (B, K, h, w) at 1/4 of the padded input, which
    the inference engine treats as the official pipeline of that head does."""

    def forward(self, feats: list[Any]) -> Any:
        ...

    def loss(self, feats: list[Any], target: Any, ignore_index: int) -> dict[str, Any]:
        """The weighted losses of a (B, H, W) class-id target at the input size; the train loop sums them."""
