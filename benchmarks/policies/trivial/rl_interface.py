"""The policy protocol's wire types, as Kinitro's miner template validates them (DESIGN §6).

Kept in the template layout on purpose: the benchmark should pay what a real miner's server pays
per step (pydantic validation of the observation, response model serialisation).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rgb: dict[str, Any] = Field(default_factory=dict)  # camera -> {"data": base64, "shape", "dtype"}
    depth: dict[str, Any] = Field(default_factory=dict)
    proprio: dict[str, list[float]] = Field(default_factory=dict)
    cam_intrinsics: dict[str, Any] = Field(default_factory=dict)
    cam_extrinsics: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


class Action(BaseModel):
    continuous: dict[str, list[float]] = Field(default_factory=dict)
    discrete: dict[str, list[int]] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
