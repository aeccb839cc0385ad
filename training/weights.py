"""Initial weights for the VGG16 trunk: ImageNet (Keras' download), a local file, or none."""

from __future__ import annotations

from typing import Any

from shared.errors import ConfigError
from training.architecture import VGG16_BLOCKS

CONV_LAYERS = tuple(
    f"block{b}_conv{c}"
    for b, (_, convs) in enumerate(VGG16_BLOCKS, start=1)
    for c in range(1, convs + 1)
)


def load_reference(weights: str, *, input_size: int) -> Any:
    """A Keras VGG16 (no top) holding the requested weights, to copy the convolutions from."""
    import keras

    source = "imagenet" if weights == "imagenet" else weights
    try:
        return keras.applications.VGG16(
            include_top=False, weights=source, input_shape=(input_size, input_size, 3)
        )
    except Exception as exc:  # download failures and bad files surface as many types
        if weights == "imagenet":
            raise ConfigError(
                f"could not load ImageNet weights ({exc.__class__.__name__}: {exc}); "
                "without internet access pass --weights PATH to a local VGG16 notop weights file"
            ) from None
        raise ConfigError(f"--weights {weights}: not a VGG16 weights file ({exc})") from None


def copy_trunk_weights(reference: Any, model: Any) -> int:
    """Copy the 13 conv layers by name into `model`; returns how many were copied."""
    copied = 0
    for name in CONV_LAYERS:
        target = model.get_layer(name)
        source = reference.get_layer(name)
        if [w.shape for w in target.get_weights()] != [w.shape for w in source.get_weights()]:
            raise ConfigError(
                f"pretrained weights need full width (--width 1): layer {name} has shape "
                f"{source.get_weights()[0].shape}, the model {target.get_weights()[0].shape}"
            )
        target.set_weights(source.get_weights())
        copied += 1
    return copied


def set_trunk_trainable(model: Any, trainable: bool) -> None:
    """Freeze or unfreeze the 13 conv layers (the head stays trainable)."""
    for name in CONV_LAYERS:
        model.get_layer(name).trainable = trainable
