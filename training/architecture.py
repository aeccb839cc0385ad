"""The one VGG16 builder used by training and serving, and the two cascade stages built on it.

Preprocessing (grayscale for stage 1, VGG's mean subtraction) lives inside the saved models, so
serving feeds plain RGB uint8 pixels exactly as the decoder produces them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers, ops

from shared.errors import InvalidArgument

# (filters, convolutions) per block: the 13 convolutions of VGG16.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
# ImageNet channel means in BGR order, as Keras' VGG16 ("caffe" mode) expects.
CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)
LUMA = (0.299, 0.587, 0.114)
# Stage 2 modulates the outputs of these blocks per model (FiLM, see _model_film).
FILM_BLOCKS = (3, 4, 5)


@keras.saving.register_keras_serializable(package="skuai")
class VGGPreprocess(layers.Layer):
    """RGB 0-255 in; optional grayscale (kept as 3 channels for ImageNet weights); caffe means."""

    def __init__(self, grayscale: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grayscale = grayscale

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.grayscale:
            luma = ops.sum(x * ops.convert_to_tensor(LUMA, dtype=x.dtype), axis=-1, keepdims=True)
            x = ops.concatenate([luma, luma, luma], axis=-1)
        bgr = ops.flip(x, axis=-1)
        return bgr - ops.convert_to_tensor(CAFFE_MEANS_BGR, dtype=x.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "grayscale": self.grayscale}


@keras.saving.register_keras_serializable(package="skuai")
class MaskedSoftmax(layers.Layer):
    """Softmax over the SKUs of the given model only: p(SKU | model), zero for other models."""

    def __init__(self, membership: list[list[int]], num_skus: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.membership = [list(map(int, skus)) for skus in membership]
        self.num_skus = int(num_skus)
        mask = [[0.0] * self.num_skus for _ in self.membership]
        for model, skus in enumerate(self.membership):
            for sku in skus:
                mask[model][sku] = 1.0
        self._mask = mask

    def call(self, logits: Any, model_index: Any) -> Any:
        mask = ops.take(ops.convert_to_tensor(self._mask, dtype="float32"), model_index, axis=0)
        logits = ops.cast(logits, "float32")
        return ops.softmax(ops.where(mask > 0, logits, -1e9), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "membership": self.membership, "num_skus": self.num_skus}


def vgg16_trunk(
    x: Any,
    *,
    width: float = 1.0,
    batch_norm: bool = False,
    after_block: Callable[[Any, int], Any] | None = None,
) -> Any:
    """The 13 convolutions and 5 poolings of VGG16; layer names match Keras' VGG16 weights.
    `after_block(x, block)`, when given, transforms each block's pooled output."""
    if not 0 < width <= 1:
        raise InvalidArgument(f"width must be in (0, 1], got {width}")
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convs + 1):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(
                max(4, round(filters * width)),
                3,
                padding="same",
                activation=None if batch_norm else "relu",
                name=name,
            )(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
                x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
        if after_block is not None:
            x = after_block(x, block)
    return x


def build_stage1(
    num_models: int,
    *,
    input_size: int,
    width: float = 1.0,
    batch_norm: bool = False,
    dropout: float = 0.3,
) -> keras.Model:
    """Stage 1: RGB image -> grayscale inside the model -> p(model)."""
    return _image_classifier(
        num_models,
        "model",
        grayscale=True,
        name="stage1",
        input_size=input_size,
        width=width,
        batch_norm=batch_norm,
        dropout=dropout,
    )


def build_stage2(
    membership: list[list[int]],
    num_skus: int,
    *,
    input_size: int,
    width: float = 1.0,
    batch_norm: bool = False,
    dropout: float = 0.3,
) -> keras.Model:
    """Stage 2: colour image + proposed model index -> p(SKU | model) over all SKUs."""
    _check_input_size(input_size)
    image = keras.Input((input_size, input_size, 3), name="image")
    model_index = keras.Input((), dtype="int32", name="model")
    x = VGGPreprocess(grayscale=False, name="preprocess")(image)
    film = _model_film(model_index, len(membership))
    x = vgg16_trunk(x, width=width, batch_norm=batch_norm, after_block=film)
    x = _head(x, width=width, dropout=dropout)
    # Conditioning on the model lets the head learn what separates colourways *within* it.
    embedded = layers.Embedding(len(membership), 32, name="model_embedding")(model_index)
    x = layers.Concatenate(name="condition")([x, embedded])
    x = layers.Dense(max(32, round(256 * width)), activation="relu", name="sku_hidden")(x)
    logits = layers.Dense(num_skus, dtype="float32", name="sku_logits")(x)
    probs = MaskedSoftmax(membership, num_skus, name="sku")(logits, model_index)
    return keras.Model({"image": image, "model": model_index}, probs, name="stage2")


def build_flat(
    num_skus: int,
    *,
    input_size: int,
    width: float = 1.0,
    batch_norm: bool = False,
    dropout: float = 0.3,
) -> keras.Model:
    """The single-stage alternative the cascade is compared with: colour image -> p(SKU)."""
    return _image_classifier(
        num_skus,
        "sku",
        grayscale=False,
        name="flat",
        input_size=input_size,
        width=width,
        batch_norm=batch_norm,
        dropout=dropout,
    )


def _image_classifier(
    classes: int,
    output: str,
    *,
    grayscale: bool,
    name: str,
    input_size: int,
    width: float,
    batch_norm: bool,
    dropout: float,
) -> keras.Model:
    """Image -> preprocessing -> VGG16 trunk -> head -> softmax over `classes`."""
    _check_input_size(input_size)
    image = keras.Input((input_size, input_size, 3), name="image")
    x = VGGPreprocess(grayscale=grayscale, name="preprocess")(image)
    x = vgg16_trunk(x, width=width, batch_norm=batch_norm)
    x = _head(x, width=width, dropout=dropout)
    probs = layers.Dense(classes, activation="softmax", dtype="float32", name=output)(x)
    return keras.Model(image, probs, name=name)


def _model_film(model_index: Any, num_models: int) -> Callable[[Any, int], Any]:
    """Feature-wise linear modulation by the model: a learned per-model scale and shift of
    every channel after the last blocks, so one trunk can weigh the features that tell this
    model's colourways apart (where its accent sits, say) instead of serving all models alike.
    Starts as the identity (scale 1, shift 0)."""

    def modulate(x: Any, block: int) -> Any:
        if block not in FILM_BLOCKS:
            return x
        channels = x.shape[-1]
        per_model = (1, 1, channels)
        scale = layers.Embedding(
            num_models, channels, embeddings_initializer="ones", name=f"block{block}_film_scale"
        )(model_index)
        shift = layers.Embedding(
            num_models, channels, embeddings_initializer="zeros", name=f"block{block}_film_shift"
        )(model_index)
        x = layers.Multiply(name=f"block{block}_film_mul")([x, layers.Reshape(per_model)(scale)])
        return layers.Add(name=f"block{block}_film_add")([x, layers.Reshape(per_model)(shift)])

    return modulate


def _head(x: Any, *, width: float, dropout: float) -> Any:
    """A small head: global pooling, one hidden layer, dropout."""
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(max(32, round(256 * width)), activation="relu", name="fc")(x)
    return layers.Dropout(dropout, name="dropout")(x)


def _check_input_size(input_size: int) -> None:
    if input_size < 32 or input_size % 32:
        raise InvalidArgument(
            f"input size must be a multiple of 32 and at least 32, got {input_size}"
        )
