"""Every Keras class this project registers passes the same checks (STYLE.md 6, after KerasHub's
``run_layer_test`` / ``run_serialization_test`` / ``run_model_saving_test``).

The classes are not listed by hand: the modules of ``stfusion_tf`` that use
``register_keras_serializable`` are imported and the classes read back from
``keras.saving.get_custom_objects()``; their number must equal the decorators in the source.
``FACTORIES`` gives each class one or more small instances and an input; a registered class
without one fails. The checks, per instance:

- config: every constructor argument is in ``get_config()``, and ``from_config`` of it gives
  an equal config;
- shapes: the output of a ``keras.Input`` equals the eager output's (and ``compute_output_shape``);
- ``.keras`` file: saved with non-trivial weights and loaded, the same weights and the same
  outputs in inference (a layer is saved inside a one-layer functional model);
- randomness (classes that own a seed): the same seed gives the same noise, another seed and
  the next call other noise.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import pkgutil
import re
from collections.abc import Callable

import keras
import numpy as np
import pytest

import stfusion_tf
from stfusion_tf.batch_norm_folding import FoldedLayer
from stfusion_tf.layers import (
    EmptyFusionLayer,
    FactorizedMaxPooling3D,
    FrameDepthwiseConv,
    GatedConv3D,
    PlanarConv3D,
)
from stfusion_tf.models import build_network, prune
from stfusion_tf.models.backbones import build_backbone
from tests.model_fixtures import tiny_config

_DECORATOR = re.compile(r"^\s*@keras\.saving\.register_keras_serializable\(", re.MULTILINE)
_PROJECT = "stfusion_tf"


def _raise(name: str) -> None:
    raise ImportError(f"could not import the package {name}")


def _registering_modules() -> dict[str, int]:
    """Module name -> number of ``register_keras_serializable`` decorators in its source."""
    counts = {}
    # A subpackage that fails to import raises (walk_packages would skip it silently).
    for info in pkgutil.walk_packages(stfusion_tf.__path__, _PROJECT + ".", onerror=_raise):
        with open(importlib.util.find_spec(info.name).origin, encoding="utf-8") as f:
            found = len(_DECORATOR.findall(f.read()))
        if found:
            counts[info.name] = found
    return counts


DECORATORS = _registering_modules()
for _name in DECORATORS:
    importlib.import_module(_name)
REGISTERED = {
    cls.__name__: (key, cls)
    for key, cls in keras.saving.get_custom_objects().items()
    if getattr(cls, "__module__", "").split(".")[0] == _PROJECT
}


@dataclasses.dataclass(frozen=True)
class Case:
    """``make(seed)`` builds a fresh instance; ``inputs`` is a batch it takes."""

    label: str
    make: Callable[[int], keras.layers.Layer]
    input_shape: tuple[int, ...]
    stochastic: bool = False  # training=True draws noise from the instance's own seed

    def inputs(self, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.normal(size=(2, *self.input_shape)).astype("float32")


CLIP = (4, 16, 16, 3)
FEATURES = (4, 8, 8, 6)


def _init(seed):
    return keras.initializers.HeNormal(seed=seed)


FACTORIES: dict[str, tuple[Case, ...]] = {
    "EmptyFusionLayer": (
        Case("transition", lambda s: EmptyFusionLayer(5, strides=2, name="t1_empty"), FEATURES),
    ),
    "FactorizedMaxPooling3D": (
        Case(
            "stem_pool",
            lambda s: FactorizedMaxPooling3D((3, 3, 3), strides=(1, 2, 2), padding="same"),
            FEATURES,
        ),
    ),
    "FoldedLayer": (Case("bn", lambda s: FoldedLayer(name="head_bn"), FEATURES),),
    "FrameDepthwiseConv": (
        Case(
            "strided",
            lambda s: FrameDepthwiseConv(3, strides=(2, 2), depthwise_initializer=_init(s)),
            FEATURES,
        ),
    ),
    "GatedConv3D": (
        Case(
            "t_branch",
            lambda s: GatedConv3D(
                4,
                (3, 1, 1),
                strides=(1, 2, 2),
                length_scale=10.0,
                num_examples=100,
                temperature=0.5,
                init_drop_probability=0.3,
                mode="sample",
                kernel_initializer=_init(s),
                seed=s,
                name="block1_layer1_t",
            ),
            FEATURES,
            stochastic=True,
        ),
    ),
    "PlanarConv3D": (
        Case(
            "stem",
            lambda s: PlanarConv3D(
                4, (3, 5, 5), strides=(1, 2, 2), padding="same", kernel_initializer=_init(s)
            ),
            CLIP,
        ),
        Case(
            "t_branch_relu",
            lambda s: PlanarConv3D(4, (3, 1, 1), activation="relu", kernel_initializer=_init(s)),
            FEATURES,
        ),
    ),
    "FusionBackbone": (
        Case(
            "resnet50",
            lambda s: build_backbone(
                "resnet50",
                "st|t|s|st",
                3,
                blocks=(1, 1, 1, 1),
                width_multiplier=0.125,
                input_frames=CLIP[0],
                input_size=CLIP[1],
                dropout=0.0,
            ),
            CLIP,
        ),
        Case(
            "mobilenet_v2",
            lambda s: build_backbone(
                "mobilenet_v2",
                "S+ST",
                3,
                blocks=(1, 1, 1, 1, 1, 1, 1),
                width_multiplier=0.35,
                input_frames=CLIP[0],
                input_size=CLIP[1],
                dropout=0.0,
            ),
            CLIP,
        ),
    ),
    "FusionNetwork": (
        Case(
            "template_sample",
            lambda s: build_network(tiny_config(seed=s), gate_mode="sample"),
            CLIP,
            stochastic=True,
        ),
        Case("pruned", lambda s: prune(build_network(tiny_config()), "st,s|-"), CLIP),
    ),
}
CASES = [
    pytest.param(case, id=f"{name}-{case.label}")
    for name, cases in sorted(FACTORIES.items())
    for case in cases
]


def _model(obj, case):
    """A layer inside a one-layer functional model (what ``.keras`` files hold); a model as is."""
    if isinstance(obj, keras.Model):
        return obj
    inputs = keras.Input(case.input_shape)
    return keras.Model(inputs, obj(inputs))


def _float_variables(model):
    return [v for v in model.variables if "float" in keras.backend.standardize_dtype(v.dtype)]


def _randomize(model, seed=1):
    """Non-trivial values in every float variable (batch-norm variances stay positive)."""
    rng = np.random.default_rng(seed)
    for v in _float_variables(model):
        v.assign(rng.uniform(0.5, 1.5, v.shape) * rng.choice([-1.0, 1.0], v.shape))
        if "variance" in v.path:
            v.assign(np.abs(keras.ops.convert_to_numpy(v)))


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


# --- Discovery -----------------------------------------------------------------------------


def test_every_decorator_registers_one_class_and_each_has_a_factory():
    assert sum(DECORATORS.values()) == len(REGISTERED) > 0, (DECORATORS, sorted(REGISTERED))
    assert all(key == f"stfusion>{name}" for name, (key, _) in REGISTERED.items())
    missing = sorted(set(REGISTERED) - set(FACTORIES))
    assert not missing, f"registered classes without a factory in FACTORIES: {missing}"
    assert not set(FACTORIES) - set(REGISTERED), "a factory for a class that is not registered"
    for name, cases in FACTORIES.items():
        for case in cases:
            assert type(case.make(0)) is REGISTERED[name][1], (name, case.label)


# --- The checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip(case):
    obj = case.make(0)
    config = obj.get_config()
    arguments = [
        p.name
        for p in inspect.signature(type(obj).__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert not [a for a in arguments if a not in config], "constructor arguments not in config"
    clone = type(obj).from_config(config)
    assert type(clone) is type(obj)
    assert clone.get_config() == config


@pytest.mark.parametrize("case", CASES)
def test_symbolic_output_shape_equals_eager(case):
    obj = case.make(0)
    x = case.inputs()
    eager = obj(x, training=False)
    symbolic = obj(keras.Input(case.input_shape))
    assert tuple(symbolic.shape) == (None, *eager.shape[1:])
    assert symbolic.dtype == keras.backend.standardize_dtype(eager.dtype)
    assert tuple(obj.compute_output_shape((2, *case.input_shape))) == tuple(eager.shape)


@pytest.mark.parametrize("case", CASES)
def test_keras_file_round_trip(case, tmp_path):
    model = _model(case.make(0), case)
    _randomize(model)
    x = case.inputs()
    expected = _numpy(model(x, training=False))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    saved = {v.path: _numpy(v) for v in _float_variables(model)}
    restored = {v.path: _numpy(v) for v in _float_variables(loaded)}
    assert sorted(restored) == sorted(saved)
    for path_name, value in saved.items():
        np.testing.assert_array_equal(restored[path_name], value, err_msg=path_name)
    got = _numpy(loaded(x, training=False))
    assert np.abs(expected).max() > 1e-3  # not a comparison of zeros
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0].stochastic])
def test_same_seed_same_noise(case):
    x = case.inputs()
    first, same, other = case.make(1), case.make(1), case.make(2)
    for obj in (first, same, other):
        if not obj.built:
            obj.build((2, *case.input_shape))
    # The same weights everywhere (the seeds also seed the kernels): only the noise differs.
    weights = {v.path: _numpy(v) for v in _float_variables(first)}
    for obj in (same, other):
        for v in _float_variables(obj):
            v.assign(weights[v.path])
    # Inference draws nothing (checked first: training updates batch-norm statistics).
    np.testing.assert_allclose(
        _numpy(first(x, training=False)), _numpy(other(x, training=False)), rtol=1e-5, atol=1e-6
    )
    y = _numpy(first(x, training=True))
    assert np.array_equal(_numpy(same(x, training=True)), y)
    assert not np.allclose(_numpy(other(x, training=True)), y, atol=1e-4)
    assert not np.allclose(_numpy(first(x, training=True)), y, atol=1e-4)  # the next draw
