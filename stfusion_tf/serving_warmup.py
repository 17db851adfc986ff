"""Warm-up requests of a TF Serving export: ``PredictionLog`` records on both signatures, which
TF Serving replays from ``assets.extra/tf_serving_warmup_requests`` so the graph has run once
before the first user request is timed.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from stfusion_tf import signatures as api
from stfusion_tf.preprocessing import PreprocessingSpec


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
