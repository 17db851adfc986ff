"""Checkpoints that say what they hold, and restore strictly by name.

Two things go wrong with checkpoints in video codebases again and again: weights that load
silently into the wrong network (a head of another dataset, another label order, a layer that
was renamed and quietly keeps its initial values), and a checkpoint that cannot be used without
the exact command line that made it. So every checkpoint of a run holds:

- the network's weights under their Keras variable paths (``weights/<layer>/<variable>``), not
  under the positions of layers in a model: a restore matches names, and every name that is
  missing on one side is reported;
- the run's METADATA, a JSON string variable (``run_metadata``): the preprocessing spec
  (``stfusion_tf.preprocessing``), the label vocabulary in index order, the dataset fingerprint
  of the records it was trained on, and the network (template config and fusion strategy), so
  ``load_network`` rebuilds the model from the checkpoint alone and ``export`` needs nothing else.

``restore_weights`` is strict: a model variable without a value in the checkpoint (missing), or a
checkpoint value without a model variable (unused), or a shape that differs, is an error that
names them, unless ``skip`` names what may be skipped (e.g. ``predictions`` when fine-tuning on a
dataset with other classes); what was skipped is returned and printed by the caller.
``check_labels`` makes a vocabulary that differs from the checkpoint's a hard error naming the
first difference.

Gate-noise states (``keras.random.SeedGenerator``) are saved too (``noise``, by position), so a
resumed run continues the same random stream; they are not weights and are not name-checked
(their names come from a process-wide counter).
"""

from __future__ import annotations

import json
import os
import re

import tensorflow as tf

from stfusion_tf.models import backbones
from stfusion_tf.models import template as template_lib

METADATA_FORMAT_VERSION = 1
WEIGHTS, METADATA, NOISE = "weights", "run_metadata", "noise"
# The classifier layer of every network of the project (template, pruned, backbones): the one
# layer whose weights depend on the label vocabulary.
CLASSIFIER = "predictions"
_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


# --- What a checkpoint holds --------------------------------------------------------------------


def weights_by_path(model) -> dict[str, tf.Variable]:
    """The model's weights keyed by their Keras path (``block1_layer1_s/kernel``)."""
    weights = {}
    for variable in model.weights:
        path = variable.path
        if path in weights:
            raise ValueError(
                f"Two weights of {model.name!r} share the path {path!r}: give the layers "
                "unique names so checkpoints can match weights by name."
            )
        weights[path] = variable
    return weights


def noise_states(model) -> list[tf.Variable]:
    """The model's variables that are not weights (gate and dropout seed-generator states)."""
    weight_ids = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def make_metadata(
    *,
    kind: str = "template",
    spec,
    labels,
    network_config: dict,
    strategy: str | None,
    fingerprint: dict | None,
    phase: str,
) -> dict:
    """The run metadata a checkpoint carries (see the module docstring). ``kind``: ``template``
    (a template or a network pruned from it) or ``backbone`` (``models.backbones``)."""
    return {
        "format_version": METADATA_FORMAT_VERSION,
        "phase": phase,
        "preprocessing": spec.to_dict(),
        "labels": list(labels),
        "fingerprint": fingerprint,
        "network": {"kind": kind, "config": dict(network_config), "strategy": strategy},
    }


def metadata_variable(metadata: dict) -> tf.Variable:
    """A string variable holding ``metadata`` as JSON, on the CPU (strings have no GPU kernel).

    Create it outside a distribution strategy's scope (it is saved by the chief, not mirrored).
    """
    with tf.device("/cpu:0"):
        return tf.Variable(
            json.dumps(metadata, sort_keys=True), dtype=tf.string, trainable=False, name=METADATA
        )


def make_checkpoint(model, metadata: dict, **objects) -> tf.train.Checkpoint:
    """A ``tf.train.Checkpoint`` of ``model`` (weights by path, noise states), its metadata and
    ``objects`` (an optimizer, counters)."""
    return tf.train.Checkpoint(
        **{
            WEIGHTS: weights_by_path(model),
            NOISE: noise_states(model),
            METADATA: metadata_variable(metadata),
        },
        **objects,
    )


# --- Reading a checkpoint -----------------------------------------------------------------------


def resolve(path: str) -> str:
    """A checkpoint prefix from a prefix, a ``checkpoints/`` folder or a phase folder."""
    path = os.fspath(path)
    if tf.io.gfile.exists(path + ".index"):
        return path
    for directory in (path, os.path.join(path, "checkpoints")):
        if tf.io.gfile.isdir(directory):
            latest = tf.train.latest_checkpoint(directory)
            if latest:
                return latest
    raise FileNotFoundError(
        f"No checkpoint at {path!r}: give a checkpoint prefix (.../ckpt-3), its folder, or a "
        "phase folder (<workspace>/train/<phase>) whose phase has run."
    )


def _unescape(name: str) -> str:
    """Undoes the object-graph escaping of checkpoint keys ('/' -> '.S', '.' -> '..')."""
    out, i = [], 0
    while i < len(name):
        if name[i] == "." and i + 1 < len(name) and name[i + 1] in "S.":
            out.append("/" if name[i + 1] == "S" else ".")
            i += 2
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


def stored_weights(checkpoint: str) -> dict[str, tuple[str, list[int]]]:
    """``{variable path: (checkpoint key, shape)}`` of the weights in a checkpoint."""
    prefix = f"{WEIGHTS}/"
    stored = {}
    for key, shape in tf.train.list_variables(checkpoint):
        if key.startswith(prefix) and key.endswith(_VALUE_SUFFIX):
            inner = key[len(prefix) : -len(_VALUE_SUFFIX)]
            if "/" not in inner:  # not an optimizer slot or another nested object
                stored[_unescape(inner)] = (key, list(shape))
    return stored


def read_metadata(path: str) -> dict:
    """The run metadata of a checkpoint (prefix, folder or phase folder)."""
    checkpoint = resolve(path)
    reader = tf.train.load_checkpoint(checkpoint)
    key = METADATA + _VALUE_SUFFIX
    if not reader.has_tensor(key):
        raise ValueError(
            f"The checkpoint {checkpoint!r} has no run metadata: it was not written by "
            "stfusion_tf.train (or by an older version). Train again, or restore its weights "
            "with restore_weights(model, path) into a model you build yourself."
        )
    return json.loads(reader.get_tensor(key).decode())


# --- Checks ---------------------------------------------------------------------------------


def first_label_difference(expected, found) -> str | None:
    """A sentence naming the first difference of two label vocabularies, or None if equal."""
    expected, found = list(expected), list(found)
    for index, (a, b) in enumerate(zip(expected, found, strict=False)):
        if a != b:
            return f"label {index} is {a!r} in one and {b!r} in the other"
    if len(expected) != len(found):
        longer, name = (expected, "first") if len(expected) > len(found) else (found, "second")
        index = min(len(expected), len(found))
        return (
            f"{len(expected)} vs {len(found)} classes: the {name} has more, starting with "
            f"label {index} {longer[index]!r}"
        )
    return None


def check_labels(checkpoint_labels, record_labels, where: str) -> None:
    """Raises when the records' vocabulary differs from the checkpoint's, naming the first
    difference: scores would be read against the wrong class names."""
    difference = first_label_difference(checkpoint_labels, record_labels)
    if difference:
        raise ValueError(
            f"The label vocabulary of {where} differs from the checkpoint's: {difference} "
            "(checkpoint first, records second). Use records converted with the checkpoint's "
            "label map, or start a new run; to fine-tune on other classes, restore without the "
            "classifier (--init_skip=predictions)."
        )


def skips(path: str, skip) -> bool:
    """Whether a variable path is named by ``skip`` (a layer name, a path prefix or a regex)."""
    return any(re.fullmatch(p, path) or path.startswith(p.rstrip("/") + "/") for p in skip)


def restore_weights(model, path: str, skip=()) -> list[str]:
    """Restores ``model``'s weights by name from a checkpoint; strict (see module docstring).

    Args:
      model: a built Keras model.
      path: a checkpoint prefix, its folder or a phase folder.
      skip: layer names or path regexes (``predictions``, ``head_.*``) whose variables may be
        missing, unused or of another shape; they keep the model's current values.

    Returns:
      The sorted variable paths skipped (model side and checkpoint side).
    """
    checkpoint = resolve(path)
    stored = stored_weights(checkpoint)
    if not stored:
        raise ValueError(
            f"The checkpoint {checkpoint!r} holds no weights by name: it was not written by "
            "stfusion_tf (checkpoints.make_checkpoint)."
        )
    weights = weights_by_path(model)
    missing = sorted(p for p in weights if p not in stored and not skips(p, skip))
    unused = sorted(p for p in stored if p not in weights and not skips(p, skip))
    reshaped = sorted(
        f"{p}: {stored[p][1]} in the checkpoint, {list(v.shape)} in the model"
        for p, v in weights.items()
        if p in stored and list(v.shape) != stored[p][1] and not skips(p, skip)
    )
    if missing or unused or reshaped:
        problems = []
        for title, names in (
            ("missing from the checkpoint", missing),
            ("in the checkpoint but not in the model (unused)", unused),
            ("of another shape", reshaped),
        ):
            if names:
                shown = ", ".join(names[:8]) + (
                    f", ... ({len(names)} in all)" if len(names) > 8 else ""
                )
                problems.append(f"{title}: {shown}")
        raise ValueError(
            f"Cannot restore {checkpoint!r} into {model.name!r}: " + "; ".join(problems) + ". "
            "Is it the checkpoint of this network? To leave out layers on purpose (e.g. the "
            "classifier when fine-tuning on a new dataset), name them with --init_skip="
            "predictions."
        )
    reader = tf.train.load_checkpoint(checkpoint)
    skipped = set()
    for path_, variable in weights.items():
        if path_ in stored and list(variable.shape) == stored[path_][1]:
            if not skips(path_, skip):
                variable.assign(reader.get_tensor(stored[path_][0]))
                continue
        skipped.add(path_)
    skipped |= {p for p in stored if p not in weights}
    return sorted(skipped)


def load_network(path: str, skip=()):
    """Rebuilds the network a checkpoint was trained as, from its metadata, with its weights.

    Returns ``(model, metadata)``: a pruned network when the metadata names a strategy, else the
    template (gates in ``expected`` mode).
    """
    metadata = read_metadata(path)
    network = metadata["network"]
    strategy = network.get("strategy")
    if network.get("kind") == "backbone":
        model = backbones.FusionBackbone(
            backbones.BackboneConfig.from_dict(network["config"]), strategy
        )
        restore_weights(model, path, skip)
        return model, metadata
    config = template_lib.TemplateConfig.from_dict(network["config"])
    if strategy:
        model = template_lib.build_network(config, strategy)
    else:
        model = template_lib.build_network(config, gate_mode="expected")
    restore_weights(model, path, skip)
    return model, metadata
