"""The pieces every hyperparameter class is built from (torch-free, pydantic only).

engine.config's sections and each method's own class (declared in the method's file under
engine/methods/) derive from these, so a method's options have the same bounds as every other's.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def epochs_field(default: int):
    """The bounds every epochs option shares (training and each unlearning method)."""
    return Field(default, ge=1, le=1000)


def lr_field(default: float):
    """The bounds every learning-rate option shares."""
    return Field(default, gt=0, le=10)


class SGDRecipe(Strict):
    """An SGD recipe: the fields training and every unlearning method share."""
    epochs: int = epochs_field(5)
    lr: float = lr_field(0.01)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, le=1)
    batch_size: int = Field(64, ge=2, le=8192)


class MethodConfig(SGDRecipe):
    """Options every unlearning method shares. Unlearning runs at constant LR (OPTML protocol)."""
