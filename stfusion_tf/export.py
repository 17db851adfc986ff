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
  ``serve_frames``: ``frames`` string ``[batch, T]``, JPEG-encoded frames of any size (each clip
  resized to the spec's eval short side and centre-cropped, as one eval view), so a thin client
  sends compressed frames (REST ``{"b64": ...}``).

  Both return ``probabilities`` float32 ``[batch, classes]``, ``logits`` float32, ``top_k_classes``
  int32 ``[batch, k]`` and ``top_k_labels`` string ``[batch, k]`` (the label map is a constant of
  the graph). A wrong clip shape fails with an error that names the expected shape.
- The contract travels with the model: the spec and the class names are variables of the
  SavedModel (``preprocessing_spec``, ``class_names``; ``load`` reads them) and assets
  (``assets/preprocessing.json``, ``assets/labels.txt``); ``model_card.json`` beside it adds the
  strategy, clip size, FLOPs, parameters and whatever the caller knows (metrics, the dataset
  fingerprint, training data manifest ids).
- ``assets.extra/tf_serving_warmup_requests``: ``PredictionLog`` records on both signatures, so
  TF Serving runs the graph once before the first user request is timed.
- A version appears at once or not at all: everything is written to a hidden folder beside the
  versions (TF Serving only loads integer folder names) and renamed into place at the end
  (``tfrecords_tools.files.staged_directory``); an existing version is never overwritten.

Entry point: ``python -m stfusion_tf.export`` (flags in ``main`` only).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import batch_norm_folding, checks, flops, preprocessing
from stfusion_tf import signatures as api
from stfusion_tf.layers import GatedConv3D
from stfusion_tf.models import template
from stfusion_tf.preprocessing import PreprocessingSpec
from tfrecords_tools import files

MODEL_CARD_FILENAME = "model_card.json"
PREPROCESSING_ASSET = "preprocessing.json"
LABELS_ASSET = "labels.txt"
WARMUP_FILENAME = os.path.join("assets.extra", "tf_serving_warmup_requests")
MODEL_CARD_VERSION = 1


# --- The serving module -------------------------------------------------------------------------


def check_inference_network(model: keras.Model, spec: PreprocessingSpec) -> None:
    """Raises unless ``model`` is a network that can be served on ``spec``'s clips: no gate
    (a template must be pruned first) and an input that accepts ``spec.eval_clip_shape``."""
    gated = [layer.name for layer, _ in flops.all_layers(model) if isinstance(layer, GatedConv3D)]
    if gated:
        raise ValueError(
            f"The model holds {len(gated)} gated convolutions (e.g. {gated[0]!r}): it is a "
            "template, not a pruned network. Export the network of a strategy instead: "
            "template.prune(template_model, strategy) or template.build_network(config, "
            f"strategy). Received: model={model.name!r}"
        )
    expected = tuple(model.input_shape[1:])
    clip = spec.eval_clip_shape
    if len(expected) != len(clip) or any(
        e is not None and e != c for e, c in zip(expected, clip, strict=False)
    ):
        raise ValueError(
            f"The model's input {expected} does not take the spec's eval clips {clip} "
            "(num_frames, eval crop): export with the spec the model was trained with. "
            f"Received: spec={spec.to_json()}"
        )


def _checked(tensor, expected_shape: list[int], name: str, what: str):
    """``tensor`` with a run-time check that its non-batch dims are ``expected_shape``.

    The signature's static shape is not checked by TF Serving or a loaded function; without
    this a wrong clip length fails deep in the network with a concat error."""
    actual = tf.shape(tensor)[1:]
    ok = tf.reduce_all(tf.equal(actual, tf.constant(expected_shape, tf.int32)))
    shape = ", ".join(str(d) for d in ["batch", *expected_shape])
    check = tf.debugging.Assert(
        ok,
        [f"`{name}` must have shape [{shape}] ({what}). Received shape:", tf.shape(tensor)],
        summarize=8,
    )
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


class ServingModule(tf.Module):
    """The exported object: the pruned network, its preprocessing and label map, and the two
    serving functions.

    Args:
      model: the pruned Keras network (clips -> logits).
      spec: the preprocessing the network was trained and evaluated with.
      class_names: class names in label-index order.
      top_k: how many classes ``top_k_classes`` / ``top_k_labels`` hold (at most the classes).
    """

    def __init__(self, model, spec: PreprocessingSpec, class_names: list[str], top_k: int = 5):
        super().__init__(name="stfusion_serving")
        check_inference_network(model, spec)
        checks.positive_int(top_k, "top_k")
        # The network is reached through a closure, not an attribute: tracking the Keras model
        # would save every weight a second time under the model's own paths. Its batch norms
        # that follow convolutions are folded into them (batch_norm_folding.py): same function,
        # fewer passes over the activations.
        network = batch_norm_folding.fold_batch_norms(model)
        self._network = lambda views: network(views, training=False)
        self.spec = spec
        self.k = min(top_k, len(class_names))
        self.preprocessing_spec = tf.Variable(spec.to_json(), trainable=False, name="spec")
        self.class_names = tf.Variable(list(class_names), trainable=False, name="class_names")
        self._labels = list(class_names)
        T, crop = spec.num_frames, spec.eval_crop
        self.clips_signature = tf.function(
            self._serve_clips,
            input_signature=[tf.TensorSpec([None, T, crop, crop, 3], tf.float32, api.CLIPS_INPUT)],
            autograph=False,
        )
        self.frames_signature = tf.function(
            self._serve_frames,
            input_signature=[tf.TensorSpec([None, T], tf.string, api.FRAMES_INPUT)],
            autograph=False,
        )
        # Keras 3 variables are not saved through tf.Module's tracking of the model: the
        # SavedModel's checkpoint would miss them (a Python load still runs from the captures,
        # TF Serving's and saved_model_cli's loader find the variables missing). Track the
        # tf.Variables the traced signatures capture, as keras.export.ExportArchive does.
        captured = {}
        for function in (self.clips_signature, self.frames_signature):
            for variable in function.get_concrete_function().variables:
                captured.setdefault(id(variable), variable)
        self.network_variables = list(captured.values())

    def _outputs(self, views):
        """Normalised ``[b, T, crop, crop, 3]`` views -> the signature's named outputs."""
        logits = tf.cast(self._network(views), tf.float32)
        probabilities = tf.nn.softmax(logits, axis=-1)
        top = tf.math.top_k(probabilities, k=self.k)
        return {
            api.PROBABILITIES: probabilities,
            api.LOGITS: logits,
            api.TOP_K_CLASSES: top.indices,
            api.TOP_K_LABELS: tf.gather(tf.constant(self._labels, tf.string), top.indices),
        }

    def _serve_clips(self, clips):
        clips = _checked(
            clips, list(self.spec.eval_clip_shape), api.CLIPS_INPUT, "float32 RGB in [0, 255]"
        )
        return self._outputs(preprocessing.normalize(clips, self.spec))

    def _serve_frames(self, frames):
        frames = _checked(frames, [self.spec.num_frames], api.FRAMES_INPUT, "JPEG bytes")
        spec = self.spec
        views = tf.map_fn(
            lambda jpegs: preprocessing.eval_views(preprocessing.decode_frames(jpegs), spec, 1)[0],
            frames,
            fn_output_signature=tf.TensorSpec(spec.eval_clip_shape, tf.float32),
        )
        return self._outputs(views)


# --- Warm-up requests and the model card --------------------------------------------------------


def warmup_inputs(spec: PreprocessingSpec, batch_size: int, index: int) -> dict[str, dict]:
    """Representative inputs of both signatures at ``batch_size``: signature -> inputs.

    The float clip is a constant mid-grey (its shape is what warms the graph); the frames are
    JPEGs of a gradient at the size the conversion stores (landscape 4:3 for ``index`` even,
    portrait for odd, so both crop paths run).
    """
    clips = np.full((batch_size, *spec.eval_clip_shape), 127.5, np.float32)
    short = spec.frame_short_side or spec.eval_short_side
    long = (short * 4 + 2) // 3
    height, width = (short, long) if index % 2 == 0 else (long, short)
    gradient = np.linspace(0, 255, height * width * 3).reshape(height, width, 3).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(gradient, quality=spec.jpeg_quality or 90).numpy()
    frames = np.full((batch_size, spec.num_frames), jpeg, dtype=object)
    return {
        api.SERVING_DEFAULT: {api.CLIPS_INPUT: clips},
        api.SERVE_FRAMES: {api.FRAMES_INPUT: frames},
    }


def write_warmup_requests(path: str, model_name: str, spec: PreprocessingSpec, count: int) -> None:
    """Writes ``count`` requests per signature (batch sizes 1, 2, 4, ...) as ``PredictionLog``
    records: the file TF Serving replays at load time."""
    from tensorflow_serving.apis import prediction_log_pb2

    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(count):
            for signature, inputs in warmup_inputs(spec, 2**i, i).items():
                request = api.predict_request(model_name, inputs, signature_name=signature)
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(log.SerializeToString())


def _signature_card(spec: PreprocessingSpec, k: int) -> dict:
    T, crop = spec.num_frames, spec.eval_crop
    outputs = {
        api.PROBABILITIES: "float32 [batch, classes]",
        api.LOGITS: "float32 [batch, classes]",
        api.TOP_K_CLASSES: f"int32 [batch, {k}]",
        api.TOP_K_LABELS: f"string [batch, {k}]",
    }
    return {
        api.SERVING_DEFAULT: {
            "inputs": {api.CLIPS_INPUT: f"float32 [batch, {T}, {crop}, {crop}, 3] RGB 0..255"},
            "outputs": outputs,
        },
        api.SERVE_FRAMES: {
            "inputs": {api.FRAMES_INPUT: f"string [batch, {T}] JPEG frames, any size"},
            "outputs": outputs,
        },
    }


def _cost_card(model, spec: PreprocessingSpec) -> dict:
    """The model card's ``cost``: MACs / params at one eval clip, and the template's MACs when
    ``model`` is a pruned ``FusionNetwork`` (the saving its strategy buys)."""
    totals = flops.model_costs(model, spec.eval_clip_shape)
    cost = {
        "clip_shape": list(spec.eval_clip_shape),
        "macs": totals.macs,
        "flops": totals.flops,
        "params": totals.params,
        "non_trainable_params": totals.non_trainable_params,
    }
    config = getattr(model, "config", None)
    # Only a network pruned from a template has a template to compare with (not a backbone).
    if getattr(model, "strategy", None) is not None and isinstance(config, template.TemplateConfig):
        full = template.build_network(config)
        template_macs = flops.count_macs(full, spec.eval_clip_shape)
        del full
        cost["template_macs"] = template_macs
        cost["macs_saving"] = 1.0 - totals.macs / template_macs if template_macs else 0.0
    return cost


def build_model_card(
    model, spec: PreprocessingSpec, class_names: list[str], k: int, extra: dict | None
) -> dict:
    """The model card: what a person (or a registry) needs to know about an export."""
    strategy = getattr(model, "strategy", None)
    config = getattr(model, "config", None)
    card = {
        "model_card_version": MODEL_CARD_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "strategy": None if strategy is None else str(strategy),
        "network": {
            "class": type(model).__name__,
            "config": config.to_dict() if hasattr(config, "to_dict") else None,
            "strategy": None if strategy is None else str(strategy),
        },
        "clip_shape": list(spec.eval_clip_shape),
        "num_classes": len(class_names),
        "classes": list(class_names),
        "cost": _cost_card(model, spec),
        "preprocessing": spec.to_dict(),
        "signatures": _signature_card(spec, k),
        "top_k": k,
        "libraries": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    for key, value in (extra or {}).items():
        if key in card or key in ("model_name", "version"):
            raise ValueError(
                f"`model_card` key {key!r} is written by the export itself; pass what it does "
                f"not know (metrics, fingerprint, training_data, ...). Received: {key}={value!r}"
            )
        card[key] = value
    return card


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
    model_dir = os.path.join(os.fspath(serving_root), model_name)
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
    module = ServingModule(model, spec, class_names, top_k=top_k)
    card = {
        "model_name": model_name,
        "version": version,
        **build_model_card(model, spec, class_names, module.k, model_card),
    }
    # The version folder appears whole or not at all (written under a hidden name, renamed).
    with files.staged_directory(final) as staging:
        with tempfile.TemporaryDirectory() as assets:
            spec_path = os.path.join(assets, PREPROCESSING_ASSET)
            labels_path = os.path.join(assets, LABELS_ASSET)
            files.write_json_atomically(spec_path, spec.to_dict())
            files.write_atomically(labels_path, "".join(f"{name}\n" for name in class_names))
            module.preprocessing_asset = tf.saved_model.Asset(spec_path)
            module.labels_asset = tf.saved_model.Asset(labels_path)
            tf.saved_model.save(
                module,
                staging,
                signatures={
                    api.SERVING_DEFAULT: module.clips_signature,
                    api.SERVE_FRAMES: module.frames_signature,
                },
            )
        if warmup_requests:
            write_warmup_requests(
                os.path.join(staging, WARMUP_FILENAME), model_name, spec, warmup_requests
            )
        files.write_json_atomically(os.path.join(staging, MODEL_CARD_FILENAME), card)
    return final


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


def results_card(results: dict, strategy: str, labels: list[str]) -> dict:
    """Model-card entries from a ``results.json`` of ``stfusion_tf.train``: the test metrics of
    the fine-tuned network of ``strategy`` (each named with its protocol), and the run's
    fingerprint. Refuses results of another label vocabulary (they describe another model)."""
    if results.get("labels") is not None and list(results["labels"]) != list(labels):
        raise ValueError(
            "The results file was computed with another label vocabulary than the checkpoint's: "
            "pass the results.json of the same run (--results)."
        )
    card = {"evaluation": {k: results.get(k) for k in ("split", "protocol") if k in results}}
    for name, entry in (results.get("models") or {}).items():
        if entry.get("strategy") == strategy and "fine-tuned" in str(entry.get("weights", "")):
            card["metrics"] = dict(entry.get("metrics", {}))
            card["evaluation"]["entry"] = name
            break
    else:
        raise ValueError(
            f"The results file holds no fine-tuned network of strategy {strategy!r}: pass the "
            "results.json of the run that fine-tuned this checkpoint, or leave --results out."
        )
    return card


def export_checkpoint(
    checkpoint: str,
    serving_root: str,
    model_name: str,
    *,
    version: int | None = None,
    results: str | None = None,
    top_k: int = 5,
) -> str:
    """Exports a checkpoint of ``stfusion_tf.train`` (a phase folder or checkpoint prefix).

    The network, its preprocessing spec, label vocabulary and dataset fingerprint all come from
    the checkpoint's metadata (``stfusion_tf.checkpoints``), nothing from flags; ``results``: the
    run's ``results.json``, whose test metrics go into the model card.
    """
    from stfusion_tf import checkpoints

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
    )


def main(argv):
    """``python -m stfusion_tf.export --checkpoint=... --serving_root=... --model_name=...``;
    prints the version folder. A setup error exits 2 with its message, no traceback."""
    from absl import flags

    f = flags.FLAGS
    if len(argv) > 1:
        print(f"export: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    try:
        path = export_checkpoint(
            f.checkpoint,
            f.serving_root,
            f.model_name,
            version=f.version or None,
            results=f.results,
            top_k=f.top_k,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string(
        "checkpoint",
        None,
        "The fine-tuned network: a phase folder (<workspace>/train/finetune), its checkpoints/ "
        "folder or a checkpoint prefix.",
    )
    flags.DEFINE_string("serving_root", None, "Root folder TF Serving loads models from.")
    flags.DEFINE_string("model_name", None, "Model folder / TF Serving model name.")
    flags.DEFINE_integer("version", 0, "Version number; 0: the next free one.")
    flags.DEFINE_string("results", None, "The run's results.json (test metrics for the card).")
    flags.DEFINE_integer("top_k", 5, "Classes in top_k_classes / top_k_labels.")
    flags.mark_flags_as_required(["checkpoint", "serving_root", "model_name"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
