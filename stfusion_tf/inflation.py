"""ImageNet inflation: a 2D network's weights into a 3D backbone or the template network.

The paper trains Something-Something and UCF101 from ImageNet-pretrained 2D DenseNet weights
inflated to 3D (method.md). ``load_2d_network(backbone, weights=PATH)`` builds the 2D source from a
LOCAL file (nothing is downloaded): ``keras.applications.DenseNet121`` / ``ResNet50`` /
``MobileNetV2`` with the file Keras itself uses (e.g. the Keras cache's
``~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels.h5``, with or without the top), or,
for the ResNeXts that Keras Applications lacks, ``build_resnet_2d(backbone)`` with a
``.weights.h5`` the user saved from it (its docstring says how torchvision names map).
``inflate(source_2d, target)`` then writes the 3D weights, finding each 2D layer by name.

The rule, and why. On a clip of identical frames the inflated network computes the 2D network's
function, frame by frame (what a test checks to 1e-4):

- Spatial kxk convs (and depthwise / grouped ones, the 1x1 convs outside fusion units, the head)
  get a temporal axis of size 1: the same conv on every frame.
- The stem's temporal kernel (5x7x7) is CENTRE-inflated: the 2D kernel at the middle tap, zeros
  elsewhere. The authors repeat it 5x and divide by 5 (mean inflation); that gives the same
  response on identical frames, but near the clip's ends zero padding removes taps, so the
  first and last two frames would see 3/5 or 4/5 of it. Centre inflation is exact at every frame
  of ANY clip, so S all the way starts as exactly the 2D network (the stem is shared by every
  strategy; its temporal taps learn from there).
- A fusion unit replaces a 2D 1x1 conv. The branches that are on SHARE the 2D response equally:
  with n branches on (n = 2 for S+ST and for the template, whose warm-up has every branch on),
  on a static clip each branch gives 1/n of the 2D conv's output, so their sum is exactly the 2D
  output. The S branch gets the 2D kernel, the T branch the 2D kernel repeated over its 3 taps
  and divided by 3 (mean inflation: a temporal average, the start I3D uses, exact away from the
  clip's two ends where zero padding removes one tap). The 1/n goes where it acts linearly:
  on the kernels in the pre-activation template (BN-ReLU-conv; the branch BNs are copies of the
  2D BN), on each branch's BN gamma and beta in the post-activation backbones (conv-BN; moving
  statistics copied), since ``BN(x) / n`` is a BN with ``gamma / n`` and ``beta / n``.
  Why not the authors' choice (the full 2D weights in both branches): it doubles the 1x1
  response of S+ST, so with copied BN statistics the inflated network does not compute the
  2D function in inference mode (in training mode batch statistics renormalize most of it,
  which is why it works for them). Why not S = 2D and T = 0: the T branch would start silent and
  a template sample with only T on would compute nothing there. With equal shares each
  branch alone is the 2D function scaled by 1/2, which training-mode BN undoes exactly.
- BN statistics are copied. A 2D conv bias (Keras' ResNet50 has one per conv) is folded into the
  next BN's moving mean (``BN(Wx + b)`` with mean ``m`` is ``BN(Wx)`` with mean ``m - b``), and
  a 2D epsilon larger than the 3D networks' 1e-5 is folded into the moving variance
  (``var + eps_2d - eps_3d``), so no 3D layer needs a bias or its own epsilon.
- The classifier ``predictions`` is copied when its shape matches (same number of classes),
  else left as built (reported in ``skipped``): a dataset's head is new anyway.

Spatial alignment: the backbones pad their strided stems and convs as their Keras 2D networks do,
so the grids agree at every input size. The template pads its stem conv and pool ``same``, which
TensorFlow splits (2, 3) / (0, 1) at even sizes while ``DenseNet121`` pads (3, 3) / (1, 1): at
an odd input size (33, 225) the template reproduces DenseNet121 exactly; at an even one its grid
is offset by one input pixel (harmless for a start, not exact).
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np

from stfusion_tf.layers import FrameDepthwiseConv, GatedConv3D, border_table
from stfusion_tf.models import template as template_lib
from stfusion_tf.models.backbones import config as backbone_config
from stfusion_tf.models.backbones.network import FusionBackbone
from stfusion_tf.models.backbones.resnet import SPECS as RESNET_SPECS
from stfusion_tf.models.backbones.resnet import build_resnet_2d
from stfusion_tf.models.batch_norm import BN_EPSILON

_APPLICATIONS = {
    backbone_config.DENSENET121: "DenseNet121",
    backbone_config.RESNET50: "ResNet50",
    backbone_config.MOBILENET_V2: "MobileNetV2",
}


@dataclasses.dataclass
class InflationReport:
    """What ``inflate`` did: 3D layers written, 3D layers left as built, with the reason."""

    inflated: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)


def load_2d_network(
    backbone: str, weights: str, *, include_top: bool | None = None, **resnext_options
):
    """The 2D ImageNet network of ``backbone`` with weights from the local file ``weights``.

    Args:
      backbone: one of ``stfusion_tf.models.backbones.BACKBONES``.
      weights: path of a Keras weights file (``.h5`` as Keras Applications ship them, or
        ``.weights.h5``). For ``densenet121`` / ``resnet50`` / ``mobilenet_v2`` (alpha 1.0) the
        Keras Applications file; for the ResNeXts a file saved from ``build_resnet_2d(backbone)``.
      include_top: whether the file has the 1000-class classifier; None tries with, then without.
      **resnext_options: ``blocks`` / ``width_multiplier`` of ``build_resnet_2d`` (ResNeXt only;
        for files of a reduced network).

    Returns:
      The 2D ``keras.Model`` (softmax head for Keras Applications; ``inflate`` copies the
      classifier's kernel and bias, i.e. the logits, whatever the activation).
    """
    backbone_config.check_backbone(backbone)
    if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(weights):
        raise ValueError(
            "`weights` must be the path of a local weights file (no download is attempted): "
            "Keras' ImageNet file for DenseNet121 / ResNet50 / MobileNetV2 (e.g. from "
            "~/.keras/models/), or a .weights.h5 saved from build_resnet_2d for a ResNeXt. "
            f"Received: weights={weights!r}"
        )
    weights = os.fspath(weights)
    if backbone in _APPLICATIONS:
        if resnext_options:
            raise ValueError(
                f"Options {sorted(resnext_options)} are for ResNeXt files only. "
                f"Received: backbone={backbone!r}"
            )
        application = getattr(keras.applications, _APPLICATIONS[backbone])
        tops = (True, False) if include_top is None else (include_top,)
        errors = []
        for top in tops:
            try:
                return application(weights=weights, include_top=top)
            except ValueError as e:  # the file does not fit this layout
                errors.append(f"include_top={top}: {e}")
        raise ValueError(
            f"{weights!r} does not hold {_APPLICATIONS[backbone]} weights. " + " | ".join(errors)
        )
    model = build_resnet_2d(backbone, **resnext_options)
    try:
        model.load_weights(weights)
    except ValueError as e:
        raise ValueError(
            f"{weights!r} does not hold the weights of build_resnet_2d({backbone!r}) (save them "
            f"with model.save_weights after converting, see its docstring): {e}"
        ) from None
    return model


# --- Array rules ------------------------------------------------------------------------------


def _array(variable) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


def _inflate_kernel(kernel_2d: np.ndarray, shape_3d, mode: str) -> np.ndarray:
    """A 2D kernel ``[kh, kw, ...]`` to ``[kt, kh, kw, ...]``: ``centre`` puts it at the middle
    tap (zeros elsewhere), ``mean`` repeats it over the taps divided by ``kt``."""
    kt = shape_3d[0]
    if tuple(shape_3d[1:]) != kernel_2d.shape:
        raise ValueError(f"shape {kernel_2d.shape} does not inflate to {tuple(shape_3d)}")
    if mode == "mean":
        return np.repeat(kernel_2d[None], kt, axis=0) / kt
    out = np.zeros(shape_3d)
    out[kt // 2] = kernel_2d
    return out


def _assign(layer, variable_name, value, report_name=None):
    variable = getattr(layer, variable_name)
    value = np.asarray(value)
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"Cannot inflate into {layer.name}/{variable_name}: the 3D network has shape "
            f"{tuple(variable.shape)}, the 2D network gives {value.shape}. Build the 3D network "
            "with the 2D network's widths (width_multiplier=1.0; for the template growth_rate=32, "
            "bottleneck_factor=4, stem_filters=64)."
        )
    variable.assign(value.astype(variable.dtype))


def _bn_values(bn_2d, epsilon_3d, conv_bias=None):
    """(gamma, beta, mean, variance) of a 2D BN for a 3D BN: bias and epsilon folded in."""
    gamma = _array(bn_2d.gamma) if bn_2d.scale else np.ones(bn_2d.moving_mean.shape)
    beta = _array(bn_2d.beta) if bn_2d.center else np.zeros(bn_2d.moving_mean.shape)
    mean = _array(bn_2d.moving_mean)
    if conv_bias is not None:
        mean = mean - conv_bias
    extra = bn_2d.epsilon - epsilon_3d
    if extra < 0:
        raise ValueError(
            f"The 2D BN {bn_2d.name} has epsilon {bn_2d.epsilon} < the 3D network's "
            f"{epsilon_3d}: that cannot be folded into the moving variance."
        )
    return gamma, beta, mean, _array(bn_2d.moving_variance) + extra


def _set_bn(bn_3d, values, scale=1.0):
    gamma, beta, mean, variance = values
    _assign(bn_3d, "gamma", gamma * scale)
    _assign(bn_3d, "beta", beta * scale)
    _assign(bn_3d, "moving_mean", mean)
    _assign(bn_3d, "moving_variance", variance)


def _kernel_3d_layer(layer):
    return isinstance(layer, (keras.layers.Conv3D, GatedConv3D, FrameDepthwiseConv))


def _set_conv(conv_3d, conv_2d, mode="centre", scale=1.0):
    attr = "depthwise_kernel" if isinstance(conv_3d, FrameDepthwiseConv) else "kernel"
    source = conv_2d.depthwise_kernel if hasattr(conv_2d, "depthwise_kernel") else conv_2d.kernel
    shape = tuple(getattr(conv_3d, attr).shape)
    kernel = _array(source)
    if shape[1:] != kernel.shape:
        _assign(conv_3d, attr, kernel)  # raises, saying what to do
    _assign(conv_3d, attr, _inflate_kernel(kernel, shape, mode) * scale)


def _set_dense(dense_3d, dense_2d, report):
    shapes = [tuple(w.shape) for w in dense_2d.weights]
    if shapes != [tuple(w.shape) for w in dense_3d.weights]:
        report.skipped[dense_3d.name] = (
            f"the 2D classifier has shapes {shapes}: a different number of classes"
        )
        return
    for variable, value in zip(dense_3d.weights, dense_2d.weights, strict=True):
        variable.assign(value)
    report.inflated.append(dense_3d.name)


def _get(model_2d, name):
    try:
        return model_2d.get_layer(name)
    except ValueError:
        return None


def _require(model_2d, name, for_layer):
    layer = _get(model_2d, name)
    if layer is None:
        raise ValueError(
            f"The 2D network {model_2d.name!r} has no layer {name!r} for the 3D layer "
            f"{for_layer!r}: is it the 2D network of this backbone (load_2d_network)?"
        )
    return layer


# --- The template (DenseNet-121, pre-activation) ----------------------------------------------


def _template_source(prefix):
    """2D DenseNet121 names of a template fusion layer: (input BN, 1x1 conv, mid BN, 3x3 conv)."""
    if prefix.startswith("transition"):
        b = int(prefix[len("transition") :]) + 1
        return f"pool{b}_bn", f"pool{b}_conv", None, None
    block, layer = prefix[len("block") :].split("_layer")
    src = f"conv{int(block) + 1}_block{layer}"
    return f"{src}_0_bn", f"{src}_1_conv", f"{src}_1_bn", f"{src}_2_conv"


def _inflate_template(model_2d, target, report):
    config = target.config
    layers = {layer.name: layer for layer in target.layers}

    def bn(name_3d, name_2d, scale=1.0):
        layer = layers[name_3d]
        _set_bn(layer, _bn_values(_require(model_2d, name_2d, name_3d), layer.epsilon), scale)
        report.inflated.append(name_3d)

    def conv(name_3d, name_2d, mode="centre", scale=1.0):
        _set_conv(layers[name_3d], _require(model_2d, name_2d, name_3d), mode, scale)
        report.inflated.append(name_3d)

    conv("stem_conv", "conv1_conv")
    bn("stem_bn", "conv1_bn")
    for index, prefix in enumerate(template_lib.fusion_layer_names(config)):
        bn_in, conv_1, bn_mid, conv_2 = _template_source(prefix)
        if target.is_template:
            branches = (True, True)
        else:
            branches = target.strategy.branches(index)
        n = sum(branches)
        if n == 0:  # the constant map of BN-ReLU-conv1x3x3 of a zero input (template's rule)
            empty = layers[f"{prefix}_empty"]
            if bn_mid is None:
                empty.table.assign(np.zeros(empty.table.shape, "float32"))
            else:
                mid = _require(model_2d, bn_mid, empty.name)
                eps = BN_EPSILON
                gamma, beta, mean, variance = _bn_values(mid, eps)
                constant = np.maximum(beta - gamma * mean / np.sqrt(variance + eps), 0.0)
                kernel = _array(_require(model_2d, conv_2, empty.name).kernel)[None]
                empty.table.assign(border_table(constant, kernel))
            report.inflated.append(empty.name)
            continue
        for on, branch, mode in ((branches[0], "s", "centre"), (branches[1], "t", "mean")):
            if on:
                bn(f"{prefix}_{branch}_bn", bn_in)
                conv(f"{prefix}_{branch}", conv_1, mode, scale=1.0 / n)
        if bn_mid is not None:
            bn(f"{prefix}_bn", bn_mid)
            conv(f"{prefix}_conv", conv_2)
    bn("head_bn", "bn")
    predictions = _get(model_2d, "predictions")
    if predictions is None:
        report.skipped["predictions"] = "the 2D network has no classifier (include_top=False)"
    else:
        _set_dense(layers["predictions"], predictions, report)


# --- The backbones (post-activation: conv, BN) ------------------------------------------------


# A fusion unit's branch conv or BN: ``<unit>_s``, ``<unit>_t``, ``<unit>_s_bn``, ``<unit>_t_bn``.
_UNIT_LAYER = re.compile(r"^(.+)_[st](_bn)?$")


def _unit_source(backbone, unit):
    """2D (conv, BN) names of the 1x1 conv that the fusion unit ``unit`` replaces."""
    if backbone == backbone_config.MOBILENET_V2:
        return unit, f"{unit}_BN"
    return f"{unit}_conv", f"{unit}_bn"


def _conv_before(model_2d, bn_name):
    """The 2D conv whose output a BN normalizes (by the Keras Applications naming)."""
    for suffix, conv_suffix in (("_bn", "_conv"), ("_BN", ""), ("_bn", "")):
        if bn_name.endswith(suffix):
            layer = _get(model_2d, bn_name[: -len(suffix)] + conv_suffix)
            if layer is not None:
                return layer
    if bn_name.startswith("bn_"):
        return _get(model_2d, bn_name[len("bn_") :])
    return None


def _bias(conv_2d):
    if conv_2d is None or not getattr(conv_2d, "use_bias", False):
        return None
    return _array(conv_2d.bias)


def _inflate_backbone(model_2d, target, report):
    backbone = target.config.backbone
    units = {}  # 3D layer name of a fusion-unit conv / BN -> (2D conv, 2D BN, branches on)
    for layer in target.layers:
        match = _UNIT_LAYER.match(layer.name)
        if match:
            index = target.fusion_layers.index(target.part_of(layer.name))
            n = sum(target.strategy.branches(index))
            units[layer.name] = (*_unit_source(backbone, match.group(1)), n)
    biases_folded = set()
    for layer in target.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name == "predictions":
            source = _get(model_2d, name)
            if source is None:
                report.skipped[name] = "the 2D network has no classifier (include_top=False)"
            else:
                _set_dense(layer, source, report)
            continue
        if name in units:
            conv_name, bn_name, n = units[name]
            if isinstance(layer, keras.layers.BatchNormalization):
                source = _require(model_2d, bn_name, name)
                conv = _require(model_2d, conv_name, name)
                _set_bn(layer, _bn_values(source, layer.epsilon, _bias(conv)), scale=1.0 / n)
                biases_folded.add(conv_name)
            else:
                mode = "mean" if layer.kernel.shape[0] > 1 else "centre"
                _set_conv(layer, _require(model_2d, conv_name, name), mode)
            report.inflated.append(name)
            continue
        source = _require(model_2d, name, name)
        if isinstance(layer, keras.layers.BatchNormalization):
            conv = _conv_before(model_2d, name)
            _set_bn(layer, _bn_values(source, layer.epsilon, _bias(conv)))
            if conv is not None:
                biases_folded.add(conv.name)
        elif _kernel_3d_layer(layer):
            _set_conv(layer, source, "centre")
        else:
            raise ValueError(f"Do not know how to inflate {name!r} ({type(layer).__name__}).")
        report.inflated.append(name)
    for layer in target.layers:
        if isinstance(layer, keras.layers.Conv3D):
            conv_name = units[layer.name][0] if layer.name in units else layer.name
            conv = _get(model_2d, conv_name)
            if _bias(conv) is not None and conv_name not in biases_folded:
                raise ValueError(f"The bias of the 2D conv {conv_name!r} has no BN to fold into.")


def inflate(source_2d: keras.Model, target: keras.Model) -> InflationReport:
    """Writes the 2D network's weights, inflated, into a 3D backbone or the template.

    Args:
      source_2d: the 2D network (``load_2d_network``, or any Keras model with the same layer
        names: ``keras.applications.DenseNet121`` / ``ResNet50`` / ``MobileNetV2`` layouts,
        ``build_resnet_2d``).
      target: a ``FusionBackbone`` (``build_backbone``), a pruned DenseNet-121 network or the
        template (``template.build_network(config)``, gates keep their initial drop probability).

    Returns:
      An ``InflationReport``. The module docstring gives the rule for each kind of weight.

    Example: a small ResNeXt-50, S all the way, computes the 2D network on a static clip:
    >>> from stfusion_tf.models.backbones import build_backbone
    >>> tiny = dict(blocks=(1, 1, 1, 1), width_multiplier=0.25)
    >>> net_2d = build_resnet_2d("resnext50_32x4d", 10, input_size=32, **tiny)
    >>> model = build_backbone("resnext50_32x4d", "S", 10, input_frames=2, input_size=32, **tiny)
    >>> report = inflate(net_2d, model)
    >>> len(report.inflated), report.skipped
    (35, {})
    >>> image = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype("float32")
    >>> clip = np.stack([image, image], axis=1)  # the image on both frames
    >>> np.allclose(model(clip, training=False), net_2d(image, training=False), atol=1e-4)
    True
    """
    if isinstance(target, template_lib.FusionNetwork):
        expected = ("stem_conv", "conv1_conv")
        _require(source_2d, expected[1], expected[0])
        report = InflationReport()
        _inflate_template(source_2d, target, report)
        return report
    if isinstance(target, FusionBackbone):
        backbone = target.config.backbone
        if backbone in RESNET_SPECS and _get(source_2d, "conv1_conv") is None:
            raise ValueError(
                f"{source_2d.name!r} is not a ResNet-layout 2D network for {backbone}."
            )
        report = InflationReport()
        _inflate_backbone(source_2d, target, report)
        return report
    raise ValueError(
        "`target` must be a FusionBackbone (build_backbone), a pruned DenseNet-121 or the "
        f"template network. Received: target={getattr(target, 'name', target)!r}"
    )
