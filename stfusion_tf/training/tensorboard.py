"""TensorBoard summaries of the phases: one run per phase, the same tag names in every run.

Each phase writes its event files to ``train/<phase>/logs`` and names its per-epoch scalars
after the keys of its ``history.jsonl`` (``loss``, ``cross_entropy``, ``kl``, ``train_top1``,
...) without the phase: ``tensorboard --logdir <workspace>/train`` then shows warm-up, search and
fine-tune as runs of one chart per metric, overlaid. The search adds the drop probability of each
gate (scalars) and of each branch (histograms), and the sample phase the marginal-probability
chart (an image) in the search's run.

The summaries are written with ``tf.summary.write`` and the plugin names TensorBoard's scalar,
histogram and image dashboards look for, in the tensor layouts of TensorBoard's own summary ops:
training does not import TensorBoard (``tensorboard`` is in the requirements to view them).
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import summary_pb2


def _summary_metadata(plugin_name: str):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
    )


def log_scalar(name: str, value: float, step: int) -> None:
    """A scalar of TensorBoard's scalar dashboard (a float32 of rank 0)."""
    tf.summary.write(
        name,
        tf.constant(float(value), tf.float32),
        step=step,
        metadata=_summary_metadata("scalars"),
    )


def log_histogram(name: str, values, step: int, bins: int = 20) -> None:
    """A TensorBoard histogram (the ``[bins, 3]`` left / right / count tensor of its plugin)."""
    values = np.asarray(values, np.float64).reshape(-1)
    counts, edges = np.histogram(values, bins=bins)
    tensor = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    tf.summary.write(name, tf.constant(tensor), step=step, metadata=_summary_metadata("histograms"))


def log_png(name: str, png: bytes, step: int) -> None:
    """An image of TensorBoard's image dashboard: the string tensor ``[width, height, png]``."""
    width, height = Image.open(io.BytesIO(png)).size
    tf.summary.write(
        name,
        tf.constant([str(width).encode(), str(height).encode(), png]),
        step=step,
        metadata=_summary_metadata("images"),
    )


def log_png_file(logdir: str, name: str, path: str, step: int) -> None:
    """Adds the PNG file ``path`` to the run of ``logdir`` (a new event file beside the phase's
    own, which TensorBoard reads as the same run)."""
    with tf.io.gfile.GFile(path, "rb") as f:
        png = f.read()
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        log_png(name, png, step)
    writer.close()
