"""Evaluation of a network on eval views: clip-level and video-level top-k, each named with its
protocol.

The paper tests on several clips per video and averages the scores (video level); its
supplementary reports clip level for quick comparison; sampled strategies are scored on a held-out
split. The same accuracy number means different things under these protocols, so every metric
carries its protocol in its name (``video_top1@clips=10x3crops``, ``clip_top1@clips=1x1crop``):
a ``results.json`` or a CSV cell then says what was measured without a side note.

- ``clip_*``: every view (one clip, one crop) scored on its own, averaged over views.
- ``video_*``: the softmax probabilities of a video's ``num_clips x num_crops`` views averaged
  (``data.average_per_video``), then scored once per video. Probabilities, not logits, are
  averaged: a view the network is unsure about then counts less than a confident one, as in the
  authors' test code.
- ``clip_loss``: mean softmax cross-entropy of the views (float64, from logits).

Top-k counts a prediction as correct when fewer than k classes score strictly higher than the
true class (ties count in its favour, as ``tf.math.in_top_k``); with fewer than k classes top-k
is 1.

Memory stays bounded on any number of videos: views stream in the micro-batches of
``data.eval_dataset`` (a video's views are consecutive), only the views of videos not yet
complete are buffered, and a finished video leaves only its label and prediction behind.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from stfusion_tf import checks, data
from tfrecords_tools.progress import ProgressLine


def protocol_name(num_clips: int, num_crops: int) -> str:
    """``clips=10x3crops`` / ``clips=1x1crop``: the eval protocol a metric name carries."""
    checks.positive_int(num_clips, "num_clips")
    checks.positive_int(num_crops, "num_crops")
    return f"clips={num_clips}x{num_crops}crop{'s' if num_crops > 1 else ''}"


def metric_name(level: str, metric: str, num_clips: int, num_crops: int) -> str:
    """``f"{level}_{metric}@{protocol}"``, e.g. ``video_top1@clips=10x3crops``."""
    if level not in ("clip", "video"):
        raise ValueError(f"`level` must be 'clip' or 'video'. Received: level={level!r}")
    return f"{level}_{metric}@{protocol_name(num_clips, num_crops)}"


def _check_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            "`scores` must be [n, num_classes] and `labels` [n]. Received: "
            f"scores.shape={scores.shape}, labels.shape={labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(
            f"`labels` must lie in [0, {scores.shape[1]}). Received: labels={labels.tolist()}"
        )
    return scores, labels


def top_k_correct(scores, labels, k: int = 1) -> np.ndarray:
    """Boolean ``[n]``: is the true class among the ``k`` highest scores (ties count as in)."""
    checks.positive_int(k, "k")
    scores, labels = _check_scores(scores, labels)
    true = scores[np.arange(len(labels)), labels]
    return np.sum(scores > true[:, None], axis=1) < k


def top_k_accuracy(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose true class is in the top ``k`` of ``scores`` (logits or
    probabilities: only the order matters).

    Example:
    >>> top_k_accuracy([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], [2, 0], k=1)
    0.5
    >>> top_k_accuracy([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], [2, 0], k=2)
    1.0
    """
    correct = top_k_correct(scores, labels, k)
    if correct.size == 0:
        raise ValueError("top_k_accuracy needs at least one row. Received: 0 rows")
    return float(np.mean(correct))


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(logits, labels) -> np.ndarray:
    """Per-row softmax cross-entropy ``logsumexp(logits) - logits[label]``, float64."""
    logits, labels = _check_scores(logits, labels)
    m = logits.max(axis=1)
    lse = m + np.log(np.sum(np.exp(logits - m[:, None]), axis=1))
    return lse - logits[np.arange(len(labels)), labels]


def video_level_scores(logits, labels, video_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, video_probabilities, video_labels)``: softmax of each view, averaged per video.

    Raises if a video's views disagree on its label (records would be corrupt).
    """
    logits, labels = _check_scores(logits, labels)
    ids, probabilities = data.average_per_video(softmax(logits), video_ids)
    _, label_mean = data.average_per_video(labels[:, None].astype(np.float64), video_ids)
    _, label_sq = data.average_per_video(labels[:, None].astype(np.float64) ** 2, video_ids)
    if not np.allclose(label_sq, label_mean**2):
        raise ValueError("The views of a video have different labels.")
    return ids, probabilities, np.round(label_mean[:, 0]).astype(np.int64)


@dataclasses.dataclass
class EvaluationResult:
    """Metrics of one evaluation, named with their protocol, and the counts behind them.

    Attributes:
      metrics: ``{"clip_top1@clips=1x1crop": 0.83, ...}``: clip / video top-1 and top-5 and
        ``clip_loss``.
      num_videos: complete videos scored at video level.
      num_views: views scored at clip level.
      num_clips, num_crops: the protocol.
      video_labels, video_predictions: ``[num_videos]`` int, for confusion matrices.
    """

    metrics: dict[str, float]
    num_videos: int
    num_views: int
    num_clips: int
    num_crops: int
    video_labels: np.ndarray
    video_predictions: np.ndarray

    @property
    def protocol(self) -> str:
        return protocol_name(self.num_clips, self.num_crops)

    def metric(self, level: str, metric: str) -> float:
        """A metric by its short name: ``result.metric("video", "top1")``."""
        return self.metrics[metric_name(level, metric, self.num_clips, self.num_crops)]

    def to_dict(self) -> dict:
        """JSON-able: the metrics plus counts (what ``results.json`` records)."""
        return {
            "metrics": dict(self.metrics),
            "protocol": self.protocol,
            "num_videos": self.num_videos,
            "num_views": self.num_views,
        }


def make_predict_fn(model: keras.Model):
    """A traced inference function ``clips -> float32 logits`` (``training=False``).

    Traced once for any batch size (the batch axis is left unknown), so the smaller last batch
    of an eval set does not retrace. For a template in ``fixed`` gate mode, a new strategy's keep
    values are variables: the same function evaluates every strategy without retracing.
    """
    traced = {}

    def predict(clips):
        if "fn" not in traced:
            spec = tf.TensorSpec([None, *clips.shape[1:]], clips.dtype)
            # One trace per network is the design (every pruned network is a new graph); TF's
            # "frequent retracing" warning counts them as retraces of one function: silence it.
            traced["fn"] = tf.function(
                lambda x: tf.cast(model(x, training=False), tf.float32),
                input_signature=[spec],
                autograph=False,
            )
            logger = tf.get_logger()
            level = logger.level
            logger.setLevel("ERROR")
            try:
                return traced["fn"](clips)
            finally:
                logger.setLevel(level)
        return traced["fn"](clips)

    return predict


class _Accumulator:
    """Streams views in, keeps running sums; buffers only views of videos not yet complete."""

    def __init__(self, views_per_video: int, max_videos: int | None):
        self.views_per_video = views_per_video
        self.max_videos = max_videos
        self.clip_correct = {1: 0, 5: 0}
        self.loss_sum = 0.0
        self.num_views = 0
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.video_labels: list[np.ndarray] = []
        self.video_top1: list[np.ndarray] = []
        self.video_correct = {1: 0, 5: 0}
        self.num_videos = 0
        self.done = False

    def add(self, logits, labels, video_index):
        if self.done:
            return
        if self.max_videos is not None:
            # Views are in video order: keep those of the first max_videos distinct videos.
            known = {int(v) for part in self.pending for v in part[2]}
            keep = np.ones(len(video_index), bool)
            distinct = self.num_videos + len(known)
            for i, v in enumerate(video_index.tolist()):
                if v not in known:
                    known.add(v)
                    distinct += 1
                if distinct > self.max_videos:
                    keep[i:] = False
                    self.done = True
                    break
            logits, labels, video_index = logits[keep], labels[keep], video_index[keep]
        if len(labels):
            self.clip_correct[1] += int(np.sum(top_k_correct(logits, labels, 1)))
            self.clip_correct[5] += int(np.sum(top_k_correct(logits, labels, 5)))
            self.loss_sum += float(np.sum(cross_entropy(logits, labels)))
            self.num_views += len(labels)
            self.pending.append((logits, labels, video_index))
        self._flush(final=self.done)

    def _flush(self, final: bool):
        if not self.pending:
            return
        logits = np.concatenate([p[0] for p in self.pending])
        labels = np.concatenate([p[1] for p in self.pending])
        index = np.concatenate([p[2] for p in self.pending])
        if not len(index):
            self.pending = []
            return
        last = index[-1]
        # A video is complete once a later video's view arrived, or all its views are here.
        complete = index != last
        if final or np.sum(index == last) >= self.views_per_video:
            complete[:] = True
        if not np.any(complete):
            return
        ids, probabilities, video_labels = video_level_scores(
            logits[complete], labels[complete], index[complete]
        )
        self.video_labels.append(video_labels)
        self.video_top1.append(np.argmax(probabilities, axis=1))
        for k in self.video_correct:
            self.video_correct[k] += int(np.sum(top_k_correct(probabilities, video_labels, k)))
        self.num_videos += len(ids)
        rest = ~complete
        self.pending = [(logits[rest], labels[rest], index[rest])] if np.any(rest) else []

    def finish(self, truncated: bool):
        """Scores what is left. After ``max_batches`` cut the stream, a last video with fewer
        views than the protocol is dropped from the video level (it would be scored on a
        different protocol); its views still count at clip level."""
        if self.pending and truncated:
            index = np.concatenate([p[2] for p in self.pending])
            if np.sum(index == index[-1]) < self.views_per_video:
                keep = index != index[-1]
                self.pending = [
                    (
                        np.concatenate([p[0] for p in self.pending])[keep],
                        np.concatenate([p[1] for p in self.pending])[keep],
                        index[keep],
                    )
                ]
        self._flush(final=True)


def evaluate(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    max_batches: int | None = None,
    max_videos: int | None = None,
    predict_fn=None,
    verbose: bool = False,
) -> EvaluationResult:
    """Scores ``model`` on the views of ``dataset`` at clip and video level.

    Args:
      model: a Keras model from clips to logits (template, pruned network, anything).
      dataset: ``data.eval_dataset(files, spec, batch_size, num_clips=..., num_crops=...)``:
        dicts with ``clips``, ``label`` and ``video_index``, a video's views consecutive.
      num_clips, num_crops: the protocol the dataset was made with: named in every metric and
        the number of views that makes a video complete.
      max_batches: stop after this many micro-batches (quick scoring); a last video cut short
        is left out of the video level.
      max_videos: score only the first ``max_videos`` videos (their views all), then stop
        reading.
      predict_fn: a function ``clips -> logits`` to use instead of tracing ``model`` again
        (``make_predict_fn(model)``, reused over strategies in fixed gate mode).
      verbose: show a progress line over batches (``tfrecords_tools.progress``).

    Returns:
      An ``EvaluationResult``; ``result.metrics`` holds ``clip_top1``, ``clip_top5``,
      ``clip_loss``, ``video_top1``, ``video_top5``, each ``@`` the protocol.

    Example: two videos of two views each (in use, ``data.eval_dataset``'s batches), a model
    whose logits are the views' pixels. One view of each video is wrong, yet each video's mean
    probabilities pick its class; a batch of 3 cuts the second video, which is scored once whole:
    >>> model = keras.Sequential([keras.Input((1, 1, 1, 2)), keras.layers.Flatten()])
    >>> clips = np.reshape([[2, 0], [0, 1], [0, 3], [1, 0]], (4, 1, 1, 1, 2)).astype("float32")
    >>> views = {data.CLIPS: clips, data.LABEL: [0, 0, 1, 1], data.VIDEO_INDEX: [0, 0, 1, 1]}
    >>> result = evaluate(model, tf.data.Dataset.from_tensor_slices(views).batch(3), num_clips=2)
    >>> result.metrics["clip_top1@clips=2x1crop"], result.metric("video", "top1")
    (0.5, 1.0)
    >>> result.num_views, result.num_videos, result.video_predictions.tolist()
    (4, 2, [0, 1])
    """
    protocol_name(num_clips, num_crops)  # checks both
    views_per_video = num_clips * num_crops
    for name, value in (("max_batches", max_batches), ("max_videos", max_videos)):
        if value is not None:
            checks.positive_int(value, name)
    predict_fn = predict_fn or make_predict_fn(model)
    accumulator = _Accumulator(views_per_video, max_videos)
    truncated = _score_batches(dataset, predict_fn, accumulator, max_batches, verbose)
    accumulator.finish(truncated=truncated)
    if accumulator.num_views == 0 or accumulator.num_videos == 0:
        raise ValueError(
            "No complete video was evaluated: the dataset is empty or max_batches is smaller "
            f"than one video's views. Received: max_batches={max_batches}, "
            f"views per video={views_per_video}"
        )
    return _result(accumulator, num_clips, num_crops)


def _score_batches(dataset, predict_fn, accumulator, max_batches, verbose) -> bool:
    """Feeds the logits of ``dataset``'s micro-batches to ``accumulator``, until the data ends,
    ``max_batches`` were read or the accumulator has all its videos. Returns whether
    ``max_batches`` cut the stream (``_Accumulator.finish`` then drops a partial last video)."""
    # The caller prints the metrics: the line is erased (a terminal) or never written (a log).
    with ProgressLine("evaluating", max_batches, unit="batches", enabled=verbose) as line:
        batches = 0
        for batch in dataset:
            if max_batches is not None and batches >= max_batches:
                line.close(keep=False)
                return True
            logits = np.asarray(predict_fn(batch[data.CLIPS]), dtype=np.float64)
            accumulator.add(
                logits, batch[data.LABEL].numpy(), batch[data.VIDEO_INDEX].numpy().astype(np.int64)
            )
            batches += 1
            line.update(batches, views=accumulator.num_views)
            if accumulator.done:
                break
        line.close(keep=False)
    return False


def _result(accumulator: _Accumulator, num_clips: int, num_crops: int) -> EvaluationResult:
    """The clip- and video-level metrics of a finished accumulator, named by the protocol."""
    labels = np.concatenate(accumulator.video_labels)
    predictions = np.concatenate(accumulator.video_top1)

    def name(level, metric):
        return metric_name(level, metric, num_clips, num_crops)

    metrics = {
        name("clip", "top1"): accumulator.clip_correct[1] / accumulator.num_views,
        name("clip", "top5"): accumulator.clip_correct[5] / accumulator.num_views,
        name("clip", "loss"): accumulator.loss_sum / accumulator.num_views,
        name("video", "top1"): accumulator.video_correct[1] / len(labels),
        name("video", "top5"): accumulator.video_correct[5] / len(labels),
    }
    return EvaluationResult(
        metrics=metrics,
        num_videos=int(len(labels)),
        num_views=accumulator.num_views,
        num_clips=num_clips,
        num_crops=num_crops,
        video_labels=labels,
        video_predictions=predictions,
    )
