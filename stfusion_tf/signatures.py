"""The served model's contract: its signature names, input and output tensor names, and the two
request formats that address them (REST JSON and gRPC ``PredictRequest``).

What ``stfusion_tf.export`` writes into the SavedModel and what a client sends must use the same
names; they live here, below both, so that the server side (``serving_module``: signatures,
``serving_warmup``: warm-up requests, ``model_card``), ``predict`` (runs an export in-process)
and ``serving_client`` (talks to TF Serving) import them without importing each other. The
builders are pure functions, tested without a server; TensorFlow and the TF Serving protos are
imported only when a ``PredictRequest`` is built, so a REST client needs neither.

Signatures (``stfusion_tf.export`` says why these two):

- ``serving_default``: ``clips`` float32 ``[batch, T, crop, crop, 3]``, RGB in [0, 255];
- ``serve_frames``: ``frames`` string ``[batch, T]``, JPEG-encoded frames (PNG accepted), one
  size per clip, at most the export's ``max_frame_pixels`` each (``model_card.json``).

Both return ``probabilities``, ``logits``, ``top_k_classes`` and ``top_k_labels``. A request
outside this contract is answered ``INVALID_ARGUMENT`` with a message that says what was expected
and which ``[clip, frame]`` broke it (``stfusion_tf.serving_inputs``).
"""

from __future__ import annotations

import base64

import numpy as np

SERVING_DEFAULT = "serving_default"
SERVE_FRAMES = "serve_frames"
CLIPS_INPUT = "clips"
FRAMES_INPUT = "frames"
PROBABILITIES = "probabilities"
LOGITS = "logits"
TOP_K_CLASSES = "top_k_classes"
TOP_K_LABELS = "top_k_labels"
OUTPUTS = (PROBABILITIES, LOGITS, TOP_K_CLASSES, TOP_K_LABELS)


def _check_frames(clips) -> np.ndarray:
    clips = np.asarray(clips, dtype=object)
    if clips.ndim != 2 or not clips.size or not all(isinstance(b, bytes) for b in clips.flat):
        raise ValueError(
            "`clips` must be [num_clips, frames] JPEG bytes (predict.video_clips gives them). "
            f"Received: shape={clips.shape}"
        )
    return clips


def rest_body(clips, signature_name: str = SERVE_FRAMES) -> dict:
    """The JSON body of a REST ``:predict`` call (row format, one instance per clip).

    ``clips``: ``[num_clips, T]`` JPEG bytes for ``serve_frames`` (each becomes
    ``{"b64": ...}``, how TF Serving's REST API carries binary strings), or ``[num_clips, T,
    crop, crop, 3]`` numbers in [0, 255] for ``serving_default``.

    Example:
    >>> body = rest_body([[b"\\xff\\xd8a", b"\\xff\\xd8b"]])
    >>> body["signature_name"], body["instances"][0]["frames"][1]
    ('serve_frames', {'b64': '/9hi'})
    """
    if signature_name == SERVE_FRAMES:
        clips = _check_frames(clips)
        instances = [
            {FRAMES_INPUT: [{"b64": base64.b64encode(jpeg).decode("ascii")} for jpeg in clip]}
            for clip in clips
        ]
    elif signature_name == SERVING_DEFAULT:
        clips = np.asarray(clips, dtype=np.float32)
        if clips.ndim != 5:
            raise ValueError(
                "`clips` must be [num_clips, frames, height, width, 3] for serving_default. "
                f"Received: shape={clips.shape}"
            )
        instances = [{CLIPS_INPUT: clip.tolist()} for clip in clips]
    else:
        raise ValueError(
            f"`signature_name` must be {SERVE_FRAMES!r} or {SERVING_DEFAULT!r}. "
            f"Received: signature_name={signature_name!r}"
        )
    return {"signature_name": signature_name, "instances": instances}


def predict_request(
    model_name: str,
    inputs: dict,
    signature_name: str = SERVE_FRAMES,
    version: int | None = None,
):
    """A ``PredictRequest`` (gRPC, and the records of ``tf_serving_warmup_requests``).

    ``inputs``: input name -> array (``{"frames": [n, T] bytes}`` or ``{"clips": [n, T, crop,
    crop, 3] float32}``); each becomes a ``TensorProto`` with its shape and dtype.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        if name == FRAMES_INPUT:
            value = _check_frames(value)
            proto = tf.make_tensor_proto(value.tolist(), dtype=tf.string, shape=value.shape)
        else:
            value = np.asarray(value, dtype=np.float32)
            proto = tf.make_tensor_proto(value, dtype=tf.float32)
        request.inputs[name].CopyFrom(proto)
    return request
