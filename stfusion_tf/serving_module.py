"""The object a TF Serving export saves: a pruned network behind its preprocessing and label map,
served through two named signatures (``ServingModule``).

``serving_default`` takes float32 clips, ``serve_frames`` JPEG frames; both check their input
first (``stfusion_tf.serving_inputs``: shape, finite values, image format and size, each with a
message a client reads), then run the evaluation pipeline's own functions
(``preprocessing.normalize``, ``decode_frames``, ``eval_views``) inside the graph and return
the outputs named in ``stfusion_tf.signatures``. Why these choices, and how
the module is written to disk: ``stfusion_tf.export``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from stfusion_tf import batch_norm_folding, checks, flops, preprocessing, serving_inputs
from stfusion_tf import signatures as api
from stfusion_tf.layers import GatedConv3D
from stfusion_tf.preprocessing import PreprocessingSpec


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


class ServingModule(tf.Module):
    """The exported object: the pruned network, its preprocessing and label map, and the two
    serving functions.

    Args:
      model: the pruned Keras network (clips -> logits).
      spec: the preprocessing the network was trained and evaluated with.
      class_names: class names in label-index order.
      top_k: how many classes ``top_k_classes`` / ``top_k_labels`` hold (at most the classes).
      max_frame_pixels: the most pixels (height x width) a frame sent to ``serve_frames`` may
        hold, read from its header before it is decoded (``serving_inputs``).
    """

    def __init__(
        self,
        model,
        spec: PreprocessingSpec,
        class_names: list[str],
        top_k: int = 5,
        max_frame_pixels: int = serving_inputs.MAX_FRAME_PIXELS,
    ):
        super().__init__(name="stfusion_serving")
        check_inference_network(model, spec)
        checks.positive_int(top_k, "top_k")
        checks.positive_int(max_frame_pixels, "max_frame_pixels")
        self.max_frame_pixels = max_frame_pixels
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
        clips = serving_inputs.checked_clips(clips, self.spec)
        return self._outputs(preprocessing.normalize(clips, self.spec))

    def _serve_frames(self, frames):
        spec = self.spec
        frames = serving_inputs.checked_frames(frames, spec, self.max_frame_pixels)
        views = tf.map_fn(
            lambda jpegs: preprocessing.eval_views(preprocessing.decode_frames(jpegs), spec, 1)[0],
            frames,
            fn_output_signature=tf.TensorSpec(spec.eval_clip_shape, tf.float32),
        )
        return self._outputs(views)
