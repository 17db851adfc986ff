"""MAC and parameter counts against hand counts, and the walk of a functional graph against
the trace."""

import dataclasses

import keras
import numpy as np
import pytest

from stfusion_tf import flops
from stfusion_tf.flops import (
    branch_of,
    count_macs,
    fusion_block,
    fusion_part,
    group_costs,
    layer_costs,
    total_costs,
)
from stfusion_tf.models.template import TemplateConfig, build_network
from stfusion_tf.strategy import FusionStrategy


def test_single_conv_hand_count():
    inputs = keras.Input((4, 8, 8, 3))
    x = keras.layers.Conv3D(8, (3, 3, 3), strides=(1, 2, 2), padding="same", name="conv")(inputs)
    model = keras.Model(inputs, x)
    costs = layer_costs(model, (4, 8, 8, 3))
    (conv,) = costs
    assert conv.path == "conv" and conv.kind == "Conv3D"
    assert conv.input_shape == (4, 8, 8, 3) and conv.output_shape == (4, 4, 4, 8)
    # 4*4*4 output positions x (3*3*3 taps x 3 in x 8 out); bias adds are not MACs.
    assert conv.macs == 4 * 4 * 4 * 3 * 3 * 3 * 3 * 8 == 41472
    assert conv.params == 3 * 3 * 3 * 3 * 8 + 8 == model.count_params()


def test_small_network_hand_count_and_other_ops():
    inputs = keras.Input((4, 8, 8, 3))
    x = keras.layers.Conv3D(6, (1, 3, 3), padding="valid", use_bias=False, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    a = keras.layers.Conv3D(5, (1, 1, 1), name="a")(x)
    b = keras.layers.Conv3D(5, (3, 1, 1), padding="same", name="b")(x)
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.AveragePooling3D((1, 2, 2), name="pool")(x)
    x = keras.layers.GlobalAveragePooling3D(name="gap")(x)
    x = keras.layers.Dense(7, name="fc")(x)
    model = keras.Model(inputs, x)
    by = {c.path: c for c in layer_costs(model, (4, 8, 8, 3))}
    pos = 4 * 6 * 6  # valid 1x3x3 on 8x8
    assert by["c1"].macs == pos * 9 * 3 * 6
    assert by["a"].macs == pos * 6 * 5
    assert by["b"].macs == pos * 3 * 6 * 5
    assert by["fc"].macs == 5 * 7
    assert by["bn"].macs == 0 and by["bn"].other_ops == 2 * pos * 6
    assert by["bn"].params == 12 and by["bn"].non_trainable_params == 12
    assert by["relu"].other_ops == pos * 6
    assert by["add"].other_ops == pos * 5
    assert by["pool"].other_ops == 4 * 3 * 3 * 5 * 4
    assert by["gap"].other_ops == 4 * 3 * 3 * 5
    totals = total_costs(by.values())
    assert totals.macs == pos * (9 * 3 * 6 + 6 * 5 + 18 * 5) + 35 == count_macs(model, (4, 8, 8, 3))
    assert totals.flops == 2 * totals.macs
    assert totals.params + totals.non_trainable_params == model.count_params()


class _Branches(keras.layers.Layer):
    """A composite layer (not functional): two convs on the same input, summed."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.s = keras.layers.Conv3D(filters, 1, use_bias=False, name="s")
        self.t = keras.layers.Conv3D(filters, (3, 1, 1), padding="same", use_bias=False, name="t")

    def call(self, x):
        return self.s(x) + self.t(x)


class _Wrapper(keras.layers.Layer):
    """Exposes its inner conv's kernel: the kernel must be counted once."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv3D(4, 1, use_bias=False, name="conv")

    @property
    def kernel(self):
        return self.conv.kernel

    def call(self, x):
        return self.conv(x)


def test_nested_layers_are_walked_and_kernels_counted_once():
    inputs = keras.Input((3, 4, 4, 2))
    x = _Branches(8, name="branches")(inputs)
    x = _Wrapper(name="wrap")(x)
    model = keras.Model(inputs, x)
    costs = layer_costs(model, (3, 4, 4, 2))
    by = {c.path: c for c in costs}
    pos = 3 * 4 * 4
    assert by["branches/s"].macs == pos * 2 * 8
    assert by["branches/t"].macs == pos * 3 * 2 * 8
    assert by["branches"].macs == 0
    assert by["wrap/conv"].macs == pos * 8 * 4 and by["wrap"].macs == 0
    assert total_costs(costs).macs == pos * (16 + 48 + 32)
    grouped = group_costs(costs, lambda c: c.path.split("/")[0])
    assert grouped["branches"].macs == pos * 64 and grouped["wrap"].params == 32


def test_uncalled_layer_keeps_params_without_macs():
    inputs = keras.Input((2, 4, 4, 1))
    x = keras.layers.Conv3D(2, 1, name="used")(inputs)
    model = keras.Model(inputs, x)
    model.extra = keras.layers.Dense(3, name="unused")
    model.extra.build((None, 5))
    by = {c.path: c for c in layer_costs(model, (2, 4, 4, 1))}
    assert by["unused"].macs == 0 and by["unused"].params == 18 and by["unused"].input_shape is None


def test_recording_leaves_the_model_unchanged():
    inputs = keras.Input((2, 4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv3D(2, 1, name="c")(inputs))
    before = model(np.ones((1, 2, 4, 4, 1), "float32"))
    layer_costs(model, (2, 4, 4, 1))
    assert "call" not in vars(model.get_layer("c"))
    np.testing.assert_allclose(model(np.ones((1, 2, 4, 4, 1), "float32")), before)


def test_clip_shape_error():
    inputs = keras.Input((2, 4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv3D(2, 1)(inputs))
    with pytest.raises(ValueError, match=r"Received: clip_shape=\(2, 0, 4, 1\)"):
        layer_costs(model, (2, 0, 4, 1))


def test_format_count():
    assert flops.format_count(123_456_789) == "123.46M"
    assert flops.format_count(124e9) == "124.00G"
    assert flops.format_count(12) == "12"


# --- the template network ------------------------------------------------------------------------


TINY = TemplateConfig(
    num_classes=5, blocks=(2, 2), growth_rate=8, stem_filters=16, input_frames=4, input_size=32
)
CLIP = (4, 32, 32, 3)


@pytest.fixture(scope="module")
def template_costs():
    return layer_costs(build_network(TINY), CLIP)


def test_template_dense_layer_hand_count(template_costs):
    parts = group_costs(template_costs, fusion_part)
    # Stem: (5,7,7) conv 3 -> 16 at stride (1,2,2): 4x16x16 positions.
    assert parts["stem"].macs == 4 * 16 * 16 * (5 * 7 * 7 * 3) * 16
    # After the stride-2 max-pool: 4x8x8 positions, 16 channels into block1_layer1.
    # S 1x1x1 16 -> 32, T 3x1x1 16 -> 32, then 1x3x3 32 -> 8.
    pos = 4 * 8 * 8
    layer = [c for c in template_costs if fusion_part(c) == "block1_layer1"]
    by = {c.path: c for c in layer}
    assert by["block1_layer1_s"].macs == pos * 16 * 32
    assert by["block1_layer1_t"].macs == pos * 3 * 16 * 32
    assert by["block1_layer1_conv"].macs == pos * 9 * 32 * 8
    assert parts["block1_layer1"].macs == pos * (16 * 32 + 3 * 16 * 32 + 9 * 32 * 8)
    # Parameters: the two gated kernels (+ one drop logit each), the 1x3x3 kernel, three BNs'
    # gamma/beta (16, 16, 32 channels).
    assert parts["block1_layer1"].params == (
        16 * 32 + 1 + 3 * 16 * 32 + 1 + 9 * 32 * 8 + 2 * (16 + 16 + 32)
    )
    # transition1: 32 -> 16 channels, both branches, at 4x8x8 (pooling comes after).
    assert parts["transition1"].macs == pos * (32 * 16 + 3 * 32 * 16)
    assert branch_of(by["block1_layer1_s"]) == "S" and branch_of(by["block1_layer1_t"]) == "T"
    assert branch_of(by["block1_layer1_conv"]) is None


def test_template_totals_by_block(template_costs):
    model = build_network(TINY)
    blocks = group_costs(template_costs, fusion_block)
    assert list(blocks) == ["stem", "block1", "block2", "head"]
    totals = total_costs(template_costs)
    assert sum(b.macs for b in blocks.values()) == totals.macs
    assert totals.params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert totals.params + totals.non_trainable_params == model.count_params()


@pytest.mark.parametrize("strategy", ["st,t,s|s,st", "s,s,s|s,s", "t,t,t|t,t", "-,st,-|t,-"])
def test_pruned_macs_are_template_minus_removed_branches(template_costs, strategy):
    s = FusionStrategy.parse(strategy)
    pruned = layer_costs(build_network(TINY, s), CLIP)
    names = ["block1_layer1", "block1_layer2", "transition1", "block2_layer1", "block2_layer2"]
    removed = 0
    for name, unit in zip(names, s.units, strict=True):
        s_on, t_on = {"S": (1, 0), "ST": (0, 1), "S+ST": (1, 1), "none": (0, 0)}[unit]
        for c in template_costs:
            if fusion_part(c) != name:
                continue
            if (branch_of(c) == "S" and not s_on) or (branch_of(c) == "T" and not t_on):
                removed += c.macs
            # A dense layer with no unit has no 1x3x3 conv either (its output is a constant).
            if unit == "none" and c.path == f"{name}_conv":
                removed += c.macs
    assert total_costs(pruned).macs == total_costs(template_costs).macs - removed
    assert not any(c.kind == "GatedConv3D" for c in pruned)


def test_fusion_network_costs_are_counted_once_and_are_the_networks(template_costs, monkeypatch):
    """``network_costs`` reads a fusion network's count from its architecture (config and
    strategy), counted once per process: equal to a fresh count of the network itself (pruned,
    with the template's weights), and each answer a copy the caller may change. A network the
    caller holds is counted, not built again."""
    from stfusion_tf import network_costs as costs_lib
    from stfusion_tf.models.template import prune
    from stfusion_tf.network_costs import fusion_network_costs, network_costs

    monkeypatch.setattr(costs_lib, "_COUNTS", {})  # this test's process may have counted them
    template = build_network(TINY)
    assert network_costs(template, CLIP) == total_costs(template_costs)
    pruned = prune(template, "s,t,st|st,-")
    counts = []
    with monkeypatch.context() as m:
        m.setattr(costs_lib.flops, "model_costs", _counting(flops.model_costs, counts))
        m.setattr(costs_lib, "build_network", _refused)
        first = network_costs(pruned, CLIP)
        again = fusion_network_costs(TINY, FusionStrategy.parse("s,t,st|st,-"), list(CLIP))
    assert len(counts) == 1 and counts[0] is pruned  # once, the network given
    assert first == flops.model_costs(build_network(TINY, "s,t,st|st,-"), CLIP)
    assert again == first and again is not first
    first.add(first)  # the caller's copy
    assert fusion_network_costs(TINY, "s,t,st|st,-", CLIP) == again
    # A template whose gates are on is counted as it is (its gates are layers too).
    gated = build_network(TINY, gate_mode="fixed")
    assert network_costs(gated, CLIP) == flops.model_costs(gated, CLIP)
    with pytest.raises(ValueError, match=r"must be build_network\(config, strategy\)"):
        fusion_network_costs(TINY, "s,s,s|s,s", (4, 24, 24, 3), network=pruned)


def test_configs_that_differ_in_gate_settings_alone_share_one_count(monkeypatch):
    """A seed, the KL's N and lambda, the relaxation's temperature, p0 and the dropout rate
    change no weight count or operation: the networks of a study's seeds are counted once, and
    the shared count is each one's own."""
    from stfusion_tf import network_costs as costs_lib
    from stfusion_tf.network_costs import fusion_network_costs

    monkeypatch.setattr(costs_lib, "_COUNTS", {})
    other = dataclasses.replace(
        TINY,
        seed=7,
        num_examples=12,
        length_scale=0.05,
        temperature=0.5,
        init_drop_probability=0.3,
        dropout=0.2,
    )
    counts = []
    for strategy in ("s,t,st|st,-", None):
        with monkeypatch.context() as m:
            m.setattr(costs_lib.flops, "model_costs", _counting(flops.model_costs, counts))
            first = fusion_network_costs(TINY, strategy, CLIP)
            shared = fusion_network_costs(other, strategy, CLIP)
        assert shared == first == flops.model_costs(build_network(other, strategy), CLIP)
    assert len(counts) == 2  # one per architecture
    # A field that shapes the network is another architecture.
    wider = fusion_network_costs(dataclasses.replace(TINY, growth_rate=12), None, CLIP)
    assert wider.params > first.params


def _counting(fn, calls):
    def counted(model, *args):
        calls.append(model)
        return fn(model, *args)

    return counted


def _refused(*args, **kwargs):
    raise AssertionError("built a network the caller holds")


# --- the walk of a functional graph against the trace --------------------------------------------

ANY_CLIP = dataclasses.replace(TINY, input_frames=None, input_size=None)  # as training builds it


def _traced(model, clip, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(flops, "is_walkable", lambda model: False)
        return layer_costs(model, clip)


@pytest.mark.parametrize(
    "config, strategy, gate_mode, clip",
    [
        (TINY, None, "off", CLIP),
        (TINY, None, "fixed", CLIP),
        (TINY, "-,-,-|-,-", "off", CLIP),  # every dense layer empty, the transition off
        (TINY, "-,st,-|t,-", "off", CLIP),
        (TINY, "s,t,st|st,-", "off", CLIP),
        (TINY, "st,-,t|s,s", "off", CLIP),
        (TINY, "t,s,s|-,st", "off", CLIP),
        (ANY_CLIP, None, "off", (4, 36, 36, 3)),  # clips other than the input's stored shape
        (ANY_CLIP, "-,st,-|t,-", "off", (6, 20, 28, 3)),
    ],
)
def test_walk_counts_what_the_trace_counts(config, strategy, gate_mode, clip, monkeypatch):
    """Every ``LayerCost`` field of every call, in call order, and so the totals."""
    model = build_network(config, strategy, gate_mode=gate_mode)
    assert flops.is_walkable(model)
    walked = layer_costs(model, clip)
    traced = _traced(model, clip, monkeypatch)
    assert walked == traced
    assert total_costs(walked) == total_costs(traced)


def test_backbone_walk_counts_what_the_trace_counts(monkeypatch):
    """The MobileNetV2 backbone: per-frame depthwise convs and strided temporal convs."""
    from stfusion_tf.models.backbones.network import build_backbone

    model = build_backbone(
        "mobilenet_v2", "S+ST", 5, blocks=(1, 2, 1, 1, 1, 1, 1), width_multiplier=0.35,
        input_frames=4, input_size=32, dropout=0.0,
    )  # fmt: skip
    assert flops.is_walkable(model)
    assert layer_costs(model, CLIP) == _traced(model, CLIP, monkeypatch)


def test_fusion_networks_are_counted_without_a_trace(monkeypatch):
    """Template, gated template and pruned networks are walked: the trace is never called."""
    from stfusion_tf import network_costs as costs_lib

    monkeypatch.setattr(costs_lib, "_COUNTS", {})
    monkeypatch.setattr(flops, "_trace", _refused)
    assert layer_costs(build_network(TINY, gate_mode="fixed"), CLIP)
    assert costs_lib.fusion_network_costs(ANY_CLIP, "-,st,-|t,-", (4, 40, 40, 3)).macs > 0


def test_other_models_are_traced():
    """A composite layer (its inner calls are costs) or a model's own ``call`` is traced."""
    inputs = keras.Input((3, 4, 4, 2))
    assert not flops.is_walkable(keras.Model(inputs, _Branches(8)(inputs)))

    class OwnCall(keras.Model):
        def call(self, x):
            return super().call(x) * 2.0

    inputs = keras.Input((3, 4, 4, 2))
    own = OwnCall(inputs, keras.layers.Conv3D(2, 1)(inputs))
    assert not flops.is_walkable(own)
    assert flops.is_walkable(keras.Model(inputs, keras.layers.Conv3D(2, 1)(inputs)))


def test_a_clip_the_model_refuses_is_an_error_either_way(monkeypatch):
    model = build_network(TINY, "-,st,-|t,-")
    message = r"incompatible with the layer: expected shape=\(None, 4, 32, 32, 3\)"
    with pytest.raises(ValueError, match=message):
        layer_costs(model, (4, 36, 36, 3))
    with pytest.raises(ValueError, match=message):
        _traced(model, (4, 36, 36, 3), monkeypatch)
