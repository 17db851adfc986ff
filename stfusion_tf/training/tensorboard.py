"""TensorBoard scalars and histograms of the phases, written without importing TensorBoard.

The event files are read by whichever TensorBoard the user runs; the summaries carry the plugin
name TensorBoard's scalar and histogram dashboards look for.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _summary_metadata(plugin_name: str):
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name)
    )


def log_scalar(name: str, value: float, step: int) -> None:
    """A TensorBoard scalar, written without importing TensorBoard (not a dependency: the
    event files are read by whichever TensorBoard the user runs)."""
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
