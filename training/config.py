"""TrainConfig: every knob of a training run, validated, and saved as the version's config.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.errors import InvalidArgument

# Class weights proportional to count ** -power: balanced (1), tempered (0.5), or none (0).
BALANCE_POWERS = {"weights": 1.0, "sqrt": 0.5, "none": 0.0}
BALANCE_MODES = tuple(BALANCE_POWERS)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # see training.mixed_precision


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; defaults are the production ones (224 px, full width)."""

    input_size: int = 224
    epochs: int = 20
    batch_size: int = 32
    width: float = 1.0  # < 1 only for tests and the demo
    weights: str = "imagenet"  # imagenet | none | PATH
    batch_norm: bool | None = None  # None: on when training from scratch (see resolved_batch_norm)
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-5
    weight_decay: float = 0.0  # decoupled (AdamW) when above 0; `skuai tune` searches it
    patience: int = 4
    augment: bool = True
    occlusion: float = 0.3  # share of training images given an occluding patch
    augment_strength: float = 1.0  # scales the geometric and photometric ranges (training.augment)
    # stage 1 also sees blur, exposure, colour casts, JPEG (training.augment); off by default: at
    # demo scale its effect was within the seed-to-seed spread (docs/training.md, "Robustness")
    degrade_photos: bool = False
    balance: str = "none"  # class weights (BALANCE_POWERS); docs/training.md, "Uneven catalogs"
    compare_flat: bool = False  # also train a flat single-stage SKU classifier and compare
    precision: str = "auto"  # auto: mixed precision where the hardware computes 16-bit natively
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_size < 32 or self.input_size % 32:
            raise InvalidArgument(
                f"--input-size must be a multiple of 32, at least 32 (got {self.input_size})"
            )
        if self.epochs < 1:
            raise InvalidArgument(f"--epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 1:
            raise InvalidArgument(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not 0 < self.width <= 1:
            raise InvalidArgument(f"--width must be in (0, 1] (got {self.width})")
        if self.weights not in {"imagenet", "none"} and not Path(self.weights).is_file():
            raise InvalidArgument(
                f"--weights {self.weights}: no such file (use imagenet, none or a file path)"
            )
        if self.learning_rate <= 0 or self.fine_tune_learning_rate <= 0:
            raise InvalidArgument("learning rates must be above 0")
        if self.patience < 1:
            raise InvalidArgument(f"--patience must be at least 1 (got {self.patience})")
        if not 0 <= self.weight_decay < 1:
            raise InvalidArgument(f"weight_decay must be in [0, 1) (got {self.weight_decay})")
        if not 0 < self.augment_strength <= 2:
            raise InvalidArgument(
                f"augment_strength must be in (0, 2] (got {self.augment_strength})"
            )
        if not 0 <= self.occlusion <= 1:
            raise InvalidArgument(f"--occlusion must be in [0, 1] (got {self.occlusion})")
        if self.balance not in BALANCE_MODES:
            raise InvalidArgument(
                f"--balance must be one of {', '.join(BALANCE_MODES)} (got {self.balance!r})"
            )
        if self.precision not in PRECISIONS:
            raise InvalidArgument(
                f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})"
            )

    @property
    def flat_width(self) -> float:
        """Width of the flat comparison model: convolution cost grows with width squared, so
        sqrt(2) x the stage width costs about what the cascade's two passes cost together. At
        full width (pretrained weights) it cannot grow: the flat model then costs half the
        cascade, which the report shows with measured speeds."""
        return min(1.0, self.width * math.sqrt(2))

    @property
    def pretrained(self) -> bool:
        """True when the trunk starts from ImageNet or a weights file."""
        return self.weights != "none"

    @property
    def resolved_batch_norm(self) -> bool:
        """Batch norm after each conv when training from scratch: plain VGG16 trains poorly from
        random weights, while ImageNet weights were learned without normalisation layers."""
        return (not self.pretrained) if self.batch_norm is None else self.batch_norm

    def to_dict(self) -> dict[str, Any]:
        """The config as written to config.json."""
        return {**asdict(self), "batch_norm": self.resolved_batch_norm}
