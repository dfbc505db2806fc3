"""Pydantic building blocks every spec section shares: strict models, value bounds, and the base classes of the
backbone and head sections that the model families subclass (torch-free, imports nothing else of vitseg)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """A spec section: unknown keys, NaN and infinities are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Pair = tuple[int, int]

# Upper bounds that keep an absurd value (embed_dim: 1e9) a one-line error instead of an allocation failure
MAX_DIM = 8192  # channels, embed_dim: the largest official models use 1024
MAX_SIDE = 1 << 16  # image, crop and resize sides, pixels
MAX_CLASSES = 65535  # masks are stored as uint16 past 255 classes
Side = Annotated[int, Field(gt=0, le=MAX_SIDE)]
Size = tuple[Side, Side]
Channels = Annotated[int, Field(gt=0, le=MAX_DIM)]


class SectionConfig(Strict):
    """A family's section (`model.backbone`, `model.decode_head`, `model.auxiliary_head`): its `type` names the
    family in the registry; each family narrows it to its own name."""

    type: str

    def summary(self) -> str:
        """One line describing the section, for `vitseg info`."""
        return self.type


class BackboneConfig(SectionConfig):
    """Base class of every backbone family's section."""


class HeadConfig(SectionConfig):
    """Base class of every head family's section."""
