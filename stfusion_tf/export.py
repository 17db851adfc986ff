"""Export of a pruned network as a versioned SavedModel for TF Serving.

Why these choices:

- Only the PRUNED network is exported (``template.build_network(config, strategy)`` /
  ``template.prune``): the branches a strategy turns off do not exist there, so the served model
  costs the strategy's FLOPs; a template (or anything holding a ``GatedConv3D``) is refused, so
  no gate, KL term or training op can reach a server. The network is called with
  ``training=False`` inside ``tf.function``: batch norm uses its moving statistics, dropout is off,
  and a batch norm right after a convolution is folded into its kernel and bias
  (``batch_norm_folding``).
- Preprocessing is INSIDE the model, built from the ``PreprocessingSpec`` by the very functions
  the evaluation pipeline uses (``preprocessing.normalize``, ``decode_frames``, ``eval_views``):
  a client cannot forget a ``/255`` or use another mean, and what is served is what evaluation
  measured (``tests/test_serving_skew.py`` holds this to float tolerance).
- Stable, named signatures (TF Serving clients address tensors by name):

  ``serving_default``: ``clips`` float32 ``[batch, T, crop, crop, 3]``, RGB in [0, 255];
  ``serve_frames``: ``frames`` string ``[batch, T]``, JPEG-encoded frames (each clip
  resized to the spec's eval short side and centre-cropped, as one eval view), so a thin client
  sends compressed frames (REST ``{"b64": ...}``).

  Both return ``probabilities`` float32 ``[batch, classes]``, ``logits`` float32, ``top_k_classes``
  int32 ``[batch, k]`` and ``top_k_labels`` string ``[batch, k]`` (the label map is a constant of
  the graph).
- Requests are checked in the graph before any work (``stfusion_tf.serving_inputs``): a wrong
  shape, a NaN, a frame that is not a whole JPEG/PNG, larger than ``max_frame_pixels`` or of
  another size than its clip's first frame is an ``INVALID_ARGUMENT`` whose message says which
  and what was expected.
- The contract travels with the model: the spec and the class names are variables of the
  SavedModel (``preprocessing_spec``, ``class_names``; ``load`` reads them) and assets
  (``assets/preprocessing.json``, ``assets/labels.txt``); ``model_card.json`` beside it adds the
  strategy, clip size, FLOPs, parameters and whatever the caller knows (metrics, the dataset
  fingerprint, training data manifest ids).
- ``assets.extra/tf_serving_warmup_requests``: ``PredictionLog`` records on both signatures, so
  TF Serving runs the graph once before the first user request is timed.
- A version appears at once or not at all: everything is written to a hidden folder beside the
  versions (TF Serving only loads integer folder names) and renamed into place at the end
  (``tfrecords_tools.files.staged_directory``); an existing version is never overwritten. Such
  a folder that a killed export left is removed by the next export (``version_staging``).

The pieces: the served object and its signatures in ``stfusion_tf.serving_module``, the model
card in ``stfusion_tf.model_card``, the warm-up records in ``stfusion_tf.serving_warmup``; this
module writes a version folder from them (``export_saved_model``, or ``export_checkpoint`` from a
checkpoint of ``stfusion_tf.train``) and reads one back (``load``).

Entry point: ``python -m stfusion_tf.export``; its flags and ``main`` are
``stfusion_tf.export_command``, which imports nothing heavy (``--help`` and a usage error come
before TensorFlow loads).
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("stfusion_tf.export_command")

import dataclasses
import json
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import checkpoints, checks, serving_inputs, serving_warmup, version_staging
from stfusion_tf import signatures as api
from stfusion_tf.model_card import build_model_card, results_card
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.serving_module import ServingModule
from tfrecords_tools import files

MODEL_CARD_FILENAME = "model_card.json"
PREPROCESSING_ASSET = "preprocessing.json"
LABELS_ASSET = "labels.txt"
WARMUP_FILENAME = os.path.join("assets.extra", "tf_serving_warmup_requests")


# --- Export -------------------------------------------------------------------------------------


def existing_versions(model_dir: str) -> list[int]:
    """The integer version folders under ``model_dir`` (what TF Serving would load), sorted."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_dir)]
    return sorted(int(n) for n in names if n.isdigit())


def export_saved_model(
    model: keras.Model,
    spec: PreprocessingSpec,
    class_names: list[str],
    serving_root: str,
    model_name: str,
    *,
    version: int | None = None,
    model_card: dict | None = None,
    top_k: int = 5,
    warmup_requests: int = 3,
    max_frame_pixels: int = serving_inputs.MAX_FRAME_PIXELS,
) -> str:
    """Writes ``<serving_root>/<model_name>/<version>/`` for TF Serving; returns that path.

    Args:
      model: the PRUNED Keras network (``template.prune`` / ``build_network(config,
        strategy)``), clips -> logits. A template is refused.
      spec: the preprocessing the network was trained and evaluated with (its conversion part
        from the records' manifest: ``spec.with_conversion(manifest["options"])``).
      class_names: class names in label-index order (the records' ``label_map.txt``).
      serving_root: the folder TF Serving's ``models.config`` points under.
      model_name: the model's folder (and TF Serving name).
      version: integer version; None: one more than the largest existing version (1 first).
        An existing version is an error, never overwritten.
      model_card: extra model-card entries: ``metrics`` (from ``results.json``), the dataset
        ``fingerprint``, ``training_data`` (manifest ids), ...
      top_k: classes in ``top_k_classes`` / ``top_k_labels``.
      warmup_requests: warm-up requests per signature (batch sizes 1, 2, 4, ...); 0: none.
      max_frame_pixels: the largest frame (height x width) ``serve_frames`` decodes; a larger
        one is refused from its header (``serving_inputs``). In the model card.

    Example: a tiny pruned network (untrained) exported and read back with ``load``:
    >>> from stfusion_tf.models import TemplateConfig, build_network
    >>> config = TemplateConfig(num_classes=3, blocks=(1, 1), growth_rate=4, stem_filters=8,
    ...                         input_frames=4, input_size=16)
    >>> pruned = build_network(config, "st,t|s")
    >>> spec = PreprocessingSpec(num_frames=4, crop_size=16, train_short_sides=None,
    ...                          eval_short_side=16, flip=False)
    >>> serving = tempfile.TemporaryDirectory()
    >>> root = serving.name
    >>> path = export_saved_model(pruned, spec, ["left", "right", "still"], root, "demo")
    >>> os.path.relpath(path, root), sorted(os.listdir(path))  # version 1: the first
    ('demo/1', ['assets', 'assets.extra', 'fingerprint.pb', 'model_card.json', 'saved_model.pb', 'variables'])
    >>> served = load(path)
    >>> served.class_names, served.spec == spec
    (['left', 'right', 'still'], True)
    >>> outputs = served.serve_clips(np.zeros((2, 4, 16, 16, 3)))
    >>> {name: value.shape for name, value in sorted(outputs.items())}
    {'logits': (2, 3), 'probabilities': (2, 3), 'top_k_classes': (2, 3), 'top_k_labels': (2, 3)}
    >>> serving.cleanup()
    """
    started = time.time()
    _check_export_arguments(model, class_names, model_name, warmup_requests)
    model_dir = os.path.join(os.fspath(serving_root), model_name)
    version = _new_version(model_dir, model_name, version)
    final = os.path.join(model_dir, str(version))
    module = ServingModule(model, spec, class_names, top_k=top_k, max_frame_pixels=max_frame_pixels)
    card = {
        "model_name": model_name,
        "version": version,
        "max_frame_pixels": max_frame_pixels,
        **build_model_card(model, spec, class_names, module.k, model_card),
    }
    # The version folder appears whole or not at all (written under a hidden name, renamed);
    # what exports that were killed left under such names goes first.
    version_staging.remove_stale_staging(model_dir, started)
    with version_staging.staged_version(final) as staging:
        _save_module(module, staging, spec, class_names)
        if warmup_requests:
            serving_warmup.write_warmup_requests(
                os.path.join(staging, WARMUP_FILENAME), model_name, spec, warmup_requests
            )
        files.write_json_atomically(os.path.join(staging, MODEL_CARD_FILENAME), card)
    return final


def _check_export_arguments(model, class_names, model_name: str, warmup_requests: int) -> None:
    if not class_names or not all(isinstance(n, str) and n for n in class_names):
        raise ValueError(f"`class_names` must be non-empty strings. Received: {class_names!r}")
    num_outputs = model.output_shape[-1]
    if num_outputs != len(class_names):
        raise ValueError(
            f"The model has {num_outputs} outputs but {len(class_names)} class names were given: "
            "use the label map of the records it was trained on. "
            f"Received: class_names={class_names!r}"
        )
    if not model_name or os.sep in model_name or model_name.startswith("."):
        raise ValueError(f"`model_name` must be a plain folder name. Received: {model_name!r}")
    if warmup_requests < 0:
        raise ValueError(f"`warmup_requests` must be >= 0. Received: {warmup_requests!r}")


def _new_version(model_dir: str, model_name: str, version: int | None) -> int:
    """``version``, or one more than the largest existing one (1 first); an existing version is
    an error."""
    if version is None:
        version = (existing_versions(model_dir) or [0])[-1] + 1
    checks.positive_int(version, "version")
    final = os.path.join(model_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(
            f"Version {version} of {model_name!r} already exists at {final!r}: a served version "
            "is never overwritten. Export another --version (default: the next free one) or "
            "delete that folder first."
        )
    return version


def _save_module(
    module: ServingModule, directory: str, spec: PreprocessingSpec, class_names: list[str]
) -> None:
    """Saves ``module`` as a SavedModel in ``directory``: its two signatures, and the spec and
    label map as assets (``assets/preprocessing.json``, ``assets/labels.txt``)."""
    with tempfile.TemporaryDirectory() as assets:
        spec_path = os.path.join(assets, PREPROCESSING_ASSET)
        labels_path = os.path.join(assets, LABELS_ASSET)
        files.write_json_atomically(spec_path, spec.to_dict())
        files.write_atomically(labels_path, "".join(f"{name}\n" for name in class_names))
        module.preprocessing_asset = tf.saved_model.Asset(spec_path)
        module.labels_asset = tf.saved_model.Asset(labels_path)
        tf.saved_model.save(
            module,
            directory,
            signatures={
                api.SERVING_DEFAULT: module.clips_signature,
                api.SERVE_FRAMES: module.frames_signature,
            },
        )


# --- Reading an export back ---------------------------------------------------------------------


@dataclasses.dataclass
class ServedModel:
    """A loaded export: the SavedModel, its preprocessing spec and class names (read from the
    SavedModel itself, never from flags), and its two signatures."""

    path: str
    saved_model: object
    spec: PreprocessingSpec
    class_names: list[str]

    def signature(self, name: str):
        return self.saved_model.signatures[name]

    def serve_frames(self, frames) -> dict[str, np.ndarray]:
        """``[n, T]`` JPEG bytes -> the outputs as arrays."""
        out = self.signature(api.SERVE_FRAMES)(
            **{api.FRAMES_INPUT: tf.constant(np.asarray(frames, dtype=object))}
        )
        return {k: v.numpy() for k, v in out.items()}

    def serve_clips(self, clips) -> dict[str, np.ndarray]:
        """``[n, T, crop, crop, 3]`` RGB 0..255 -> the outputs as arrays."""
        out = self.signature(api.SERVING_DEFAULT)(
            **{api.CLIPS_INPUT: tf.constant(np.asarray(clips, dtype=np.float32))}
        )
        return {k: v.numpy() for k, v in out.items()}


def load(path: str) -> ServedModel:
    """Loads ``<serving_root>/<model_name>/<version>`` as written by ``export_saved_model``."""
    if not tf.io.gfile.exists(os.path.join(os.fspath(path), "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel at {path!r}: pass a version folder "
            "(<serving_root>/<model_name>/<version>) written by python -m stfusion_tf.export."
        )
    saved = tf.saved_model.load(os.fspath(path))
    if not hasattr(saved, "preprocessing_spec") or not hasattr(saved, "class_names"):
        raise ValueError(
            f"The SavedModel at {path!r} carries no preprocessing spec / class names: it was not "
            "written by stfusion_tf.export. Export it again with python -m stfusion_tf.export."
        )
    spec = PreprocessingSpec.from_json(saved.preprocessing_spec.numpy().decode())
    names = [n.decode() for n in saved.class_names.numpy().tolist()]
    return ServedModel(os.fspath(path), saved, spec, names)


# --- Entry point ---------------------------------------------------------------------------------


def export_checkpoint(
    checkpoint: str,
    serving_root: str,
    model_name: str,
    *,
    version: int | None = None,
    results: str | None = None,
    top_k: int = 5,
    max_frame_pixels: int = serving_inputs.MAX_FRAME_PIXELS,
) -> str:
    """Exports a checkpoint of ``stfusion_tf.train`` (a phase folder or checkpoint prefix).

    The network, its preprocessing spec, label vocabulary and dataset fingerprint all come from
    the checkpoint's metadata (``stfusion_tf.checkpoints``), nothing from flags; ``results``: the
    run's ``results.json``, whose test metrics go into the model card.
    """
    checks.positive_int(max_frame_pixels, "max_frame_pixels")  # before the checkpoint is read
    metadata = checkpoints.read_metadata(checkpoint)
    network = metadata.get("network") or {}
    strategy = network.get("strategy")
    # A template checkpoint (warm-up, search) holds gates; a backbone has none to prune away.
    if network.get("kind", "template") == "template" and not strategy:
        raise ValueError(
            f"The checkpoint {checkpoint!r} (phase {metadata.get('phase')!r}) holds the "
            "template, not a pruned network: export the fine-tuned one "
            "(--checkpoint=<workspace>/train/finetune)."
        )
    model, metadata = checkpoints.load_network(checkpoint)
    labels = list(metadata["labels"])
    card = {
        "checkpoint": checkpoints.resolve(checkpoint),
        "phase": metadata.get("phase"),
        "fingerprint": metadata.get("fingerprint"),
    }
    if results:
        with tf.io.gfile.GFile(results) as f:
            card.update(results_card(json.load(f), str(strategy), labels))
    return export_saved_model(
        model,
        PreprocessingSpec.from_dict(metadata["preprocessing"]),
        labels,
        serving_root,
        model_name,
        version=version,
        model_card=card,
        top_k=top_k,
        max_frame_pixels=max_frame_pixels,
    )
