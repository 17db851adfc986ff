"""The tf.data input pipeline over the project's video TFRecords, as explicit phases.

    read (shard interleave) -> parse -> sample frame indices -> gather those JPEGs
      -> [shuffle] -> decode only the chosen JPEGs -> preprocess -> batch -> prefetch

Records are the ``tf.train.SequenceExample`` of ``tfrecords_tools.format`` (one per video, one
JPEG per frame); ``format.parse`` is the only place a feature key is read.

Why the frame indices are chosen BEFORE decoding: a video holds tens to hundreds of frames and a
clip uses ``T`` of them (16 or 32 in the paper); decoding JPEGs is the dominant cost of the whole
pipeline, so decoding every frame and then picking would cost ``num_frames / T`` times more for
nothing. Parsing leaves ``image/encoded`` as a vector of undecoded JPEG strings, the sampler picks
``T`` indices, ``tf.gather`` keeps those strings, and only they are decoded. In training the
gathered strings (not the whole record) also wait in the shuffle buffer, so its memory is ``T``
JPEGs per element instead of a whole serialized video.

Why a short video is padded with its LAST frame: a clip always has ``T`` frames at stride ``s``
(the network's input shape and the temporal speed it sees stay fixed); for a video shorter than
the clip's span the indices past the end are clamped to the last frame, as if the video froze.
Looping back to the start would add a jump backwards in time (for direction-labelled data such as
Something-Something or the synthetic ``motion`` task, a reversed or teleporting motion), and black
frames would be an input the network never sees otherwise.

Clip sampling follows the authors' code (``/work/shared/paper/method.md``, "Clip sampling"):
``T`` consecutive frames at stride ``s`` from a random start in training (optionally a random
stride in ``[1, s]``), a centre clip for validation, ``num_clips`` evenly spaced clips at test;
short side scale jitter (``{256, 288, 320}`` in the paper, except Something-Something) with a
random square crop in training, a fixed short side with one centre crop or three crops at test.

The spec and the per-clip transforms (sampling, decoding, crops, normalisation) are
``stfusion_tf.preprocessing``: this module only reads, shuffles, maps and batches with them.

Library code only: entry points (``stfusion_tf.train``, ``bench/input.py``) parse flags.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import tensorflow as tf

from stfusion_tf import preprocessing
from stfusion_tf.checks import positive_int
from stfusion_tf.preprocessing import PreprocessingSpec
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest

# Keys of the elements of ``eval_dataset``.
CLIPS, LABEL, VIDEO_ID, VIDEO_INDEX, VIEW = "clips", "label", "video_id", "video_index", "view"

_MAKE_TFRECORDS = "python -m pipelines.make_tfrecords --input_dir=... --output_dir=..."


# --- Dataset metadata: label map and manifests -----------------------------------------------


def class_names(records_dir: str) -> list[str]:
    """Class names in label-index order, from ``<records_dir>/label_map.txt``."""
    path = os.path.join(os.fspath(records_dir), fmt.LABEL_MAP_FILENAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No label map at {path!r}: run {_MAKE_TFRECORDS} first.")
    names = fmt.read_label_map(path)
    if not names:
        raise ValueError(f"The label map {path!r} is empty: run {_MAKE_TFRECORDS} again.")
    return names


def num_examples(records_dir: str, split: str) -> int:
    """Videos in ``split`` (N of the gates' KL term for ``train``), from its manifest."""
    path = fmt.manifest_path(records_dir, split)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"No manifest for split {split!r} at {path!r}: run {_MAKE_TFRECORDS} first."
        )
    with tf.io.gfile.GFile(path) as f:
        listed = json.load(f)
    count = int(listed.get("num_examples", 0))
    if count < 1:
        failures = manifest.report_path(os.fspath(records_dir), split, "failures", listed)
        raise ValueError(
            f"Split {split!r} has no examples (manifest {path!r}): every video failed or the "
            f"split is empty; see {failures!r} and run "
            f"{_MAKE_TFRECORDS} again."
        )
    return count


def split_files(records_dir: str, split: str) -> list[str]:
    """The shards of ``split`` under ``records_dir``: the ones its manifest lists, and nothing
    else (``tfrecords_tools.manifest``; a glob would also read a shard left by an earlier
    conversion, and count its videos twice).

    Raises:
      FileNotFoundError: ``split`` has no manifest.
      manifest.SplitMismatchError: the folder holds unlisted shards of the split, or a listed
        shard is missing or has another size (named in the message).
    """
    return manifest.split_shards(os.fspath(records_dir), split)


def _resolve_files(file_pattern_or_list) -> list[str]:
    patterns = (
        [file_pattern_or_list]
        if isinstance(file_pattern_or_list, (str, os.PathLike))
        else list(file_pattern_or_list)
    )
    files = []
    for pattern in patterns:
        matched = sorted(tf.io.gfile.glob(os.fspath(pattern)))
        if not matched:
            raise FileNotFoundError(f"no TFRecords match {pattern!r}: run {_MAKE_TFRECORDS} first.")
        files.extend(matched)
    if not files:
        raise FileNotFoundError(f"no TFRecords given (Received: {file_pattern_or_list!r}).")
    return files


# --- Datasets ------------------------------------------------------------------------------------


def _read(files: list[str], *, shuffle_seed, deterministic: bool, input_context):
    """Shard-level read: one TFRecordDataset per shard, interleaved (parallel reads)."""
    dataset = tf.data.Dataset.from_tensor_slices(files)
    by_file = input_context is not None and len(files) >= input_context.num_input_pipelines
    if by_file and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle_seed is not None:
        # Same as tf.data.Dataset.list_files(shuffle=True, seed=...) on the resolved list; exact
        # paths, so a file name with glob characters is read as itself.
        dataset = dataset.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if not by_file and input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return dataset


def _pipeline_id(input_context) -> int:
    return 0 if input_context is None else input_context.input_pipeline_id


# Why the per-element functions are ``tf.function``s cached per spec: ``Dataset.map`` traces its
# function each time a dataset is built, and training builds one per epoch (the epoch's seed
# orders it) and evaluation one per scoring; tracing the parse/sample/decode/crop graph took about
# a tenth of a tiny run. Called from ``map``, a cached ``tf.function`` is traced once per spec and
# reused; the seeds arrive as tensors, so the ops and their values are those of a fresh trace.
# They branch on Python values only (the spec), so autograph is off: converting their source
# (and the train step's) cost every training command about 1.5 of its 17 CPU seconds.


@functools.cache
def _train_sampler(spec: PreprocessingSpec):
    """The sample phase of training, as a map over ``(element number, serialized record)`` with
    the pipeline's ``base_seed``: parse, choose the clip's frame indices, gather only those JPEGs
    (undecoded). Returns ``(jpegs [T], label, augment_seed)``.

    The element's random choices come from ``base_seed`` folded with its number by stateless
    ops, then split in two (frame indices now, augmentation at decode time): an element's clip
    depends on its place in the stream, not on which thread maps it first, so a run with the
    same seed sees the same clips."""

    @tf.function(autograph=False)
    def sample(index, serialized, base_seed):
        features = fmt.parse(serialized)
        jpegs = features[fmt.IMAGE_ENCODED]
        clip_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        index_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(clip_seed, 2))
        indices = preprocessing.sample_train_indices(tf.shape(jpegs)[0], spec, index_seed)
        label = tf.cast(features[fmt.LABEL_INDEX], tf.int32)
        return tf.gather(jpegs, indices), label, augment_seed

    return sample


@functools.cache
def _train_decoder(spec: PreprocessingSpec):
    """Decode and augment one sampled clip: ``(clip, label)``."""

    @tf.function(autograph=False)
    def decode_and_preprocess(jpegs, label, augment_seed):
        return preprocessing.train_clip(jpegs, spec, augment_seed), label

    return decode_and_preprocess


def train_dataset(
    file_pattern_or_list,
    spec: PreprocessingSpec,
    global_batch_size: int,
    *,
    seed: int,
    shuffle_buffer: int,
    deterministic: bool = False,
    repeat: bool = True,
    input_context: tf.distribute.InputContext | None = None,
    skip_clips: int = 0,
) -> tf.data.Dataset:
    """Training clips: ``(clips [B, T, crop, crop, 3] float32, labels [B] int32)``.

    Per video: one clip of ``T`` frames at stride ``s`` from a random start (padded with the last
    frame when the video is shorter), short side scale jitter, a random square crop and (if
    ``spec.flip``) a random horizontal flip, the same for every frame of the clip, normalised.

    Args:
      file_pattern_or_list: a glob (``fmt.shard_pattern(dir, "train")``), a list of globs or files.
      spec: the clip settings.
      global_batch_size: batch size over all replicas. With ``input_context`` (from
        ``strategy.distribute_datasets_from_function``) this pipeline yields the per-replica
        batch and reads its share of the shards; without it, batches are global (split by
        ``strategy.experimental_distribute_dataset``).
      seed: the seed of the shard order, the shuffle and every clip's random choices (each
        element's choices come from ``(seed, input pipeline, element number)`` by stateless ops).
      shuffle_buffer: elements in the shuffle buffer; each holds only the clip's ``T`` JPEGs.
      deterministic: same batches in the same order on every run (tf.data keeps element order in
        its parallel reads and maps; somewhat slower). False lets whichever element is ready first
        go first.
      repeat: repeat forever (epochs reshuffled); False gives one epoch.
      input_context: see ``global_batch_size``.
      skip_clips: clips of this pipeline to pass over first (after the shuffle, before any
        JPEG is decoded): a training run resumed at step k starts where it stopped, on the
        batches it would have seen, at the cost of parsing (not decoding) the skipped records.

    Batches drop the remainder (a training step sees full batches).
    """
    positive_int(global_batch_size, "global_batch_size")
    positive_int(shuffle_buffer, "shuffle_buffer")
    files = _resolve_files(file_pattern_or_list)
    batch_size = (
        input_context.get_per_replica_batch_size(global_batch_size)
        if input_context is not None
        else global_batch_size
    )
    base_seed = tf.constant([seed, _pipeline_id(input_context)], tf.int64)
    sample = _train_sampler(spec)

    dataset = _read(
        files,
        shuffle_seed=seed + _pipeline_id(input_context),
        deterministic=deterministic,
        input_context=input_context,
    )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.enumerate()
    dataset = dataset.map(
        lambda index, serialized: sample(index, serialized, base_seed),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    dataset = dataset.shuffle(shuffle_buffer, seed=seed + _pipeline_id(input_context))
    if skip_clips:
        dataset = dataset.skip(skip_clips)
    dataset = dataset.map(
        _train_decoder(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )
    # Parallel batching: copying B float clips into one tensor is otherwise one serial thread.
    dataset = dataset.batch(
        batch_size,
        drop_remainder=True,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


@functools.cache
def _eval_sampler(spec: PreprocessingSpec, num_clips: int):
    """A record's ``num_clips`` evaluation clips, undecoded, with the video's label and id."""

    @tf.function(autograph=False)
    def sample(index, serialized):
        features = fmt.parse(serialized)
        jpegs = features[fmt.IMAGE_ENCODED]
        indices = preprocessing.sample_eval_indices(tf.shape(jpegs)[0], spec, num_clips)  # [n, T]
        repeat = [num_clips]
        return {
            "jpegs": tf.gather(jpegs, indices),
            LABEL: tf.fill(repeat, tf.cast(features[fmt.LABEL_INDEX], tf.int32)),
            VIDEO_ID: tf.fill(repeat, features[fmt.VIDEO_FILENAME]),
            VIDEO_INDEX: tf.fill(repeat, index),
            "clip": tf.range(num_clips, dtype=tf.int32),
        }

    return sample


@functools.cache
def _eval_views(spec: PreprocessingSpec, num_crops: int):
    """One evaluation clip decoded and cut into its ``num_crops`` views."""

    @tf.function(autograph=False)
    def views(clip):
        clips = preprocessing.eval_views(
            preprocessing.decode_frames(clip["jpegs"]), spec, num_crops
        )
        repeat = [num_crops]
        return {
            CLIPS: clips,
            LABEL: tf.fill(repeat, clip[LABEL]),
            VIDEO_ID: tf.fill(repeat, clip[VIDEO_ID]),
            VIDEO_INDEX: tf.fill(repeat, clip[VIDEO_INDEX]),
            VIEW: clip["clip"] * num_crops + tf.range(num_crops, dtype=tf.int32),
        }

    return views


def eval_dataset(
    file_pattern_or_list,
    spec: PreprocessingSpec,
    batch_size: int,
    *,
    num_clips: int = 1,
    num_crops: int = 1,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Eval views in micro-batches: dicts of ``clips`` ``[b, T, crop, crop, 3]`` float32,
    ``label`` ``[b]`` int32, ``video_id`` ``[b]`` string (``video/filename``), ``video_index``
    ``[b]`` int64 (position of the video in this pipeline's read order: unique, even when two
    records share a file name) and ``view`` ``[b]`` int32 (``clip * num_crops + crop``).

    Each video gives ``num_clips x num_crops`` views: ``num_clips`` evenly spaced clips
    (``sample_eval_indices``; 1 = the centre clip), each resized to ``spec.eval_short_side`` and
    cut into 1 (centre) or 3 (along the long side, ``eval_crops``) crops of
    ``spec.eval_crop``. A video's views are made clip by clip and streamed into batches of
    ``batch_size`` views that may span videos, so no more than a few videos' views are in memory
    at once; average the scores per video with ``average_per_video``. The order is fixed (files
    sorted, read in order), and the last batch may be smaller.
    """
    positive_int(batch_size, "batch_size")
    positive_int(num_clips, "num_clips")
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 or 3. Received: num_crops={num_crops!r}")
    files = _resolve_files(file_pattern_or_list)

    dataset = _read(files, shuffle_seed=None, deterministic=True, input_context=input_context)
    dataset = dataset.enumerate()
    dataset = dataset.map(_eval_sampler(spec, num_clips), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()  # one element per clip
    dataset = dataset.map(_eval_views(spec, num_crops), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()  # one element per view
    dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)


def average_per_video(scores, video_ids) -> tuple[np.ndarray, np.ndarray]:
    """Video-level scores: the mean of each video's view scores.

    Args:
      scores: ``[num_views, num_classes]`` per-view scores (softmax probabilities for the
        paper's protocol, or logits).
      video_ids: ``[num_views]`` the video of each view (``video_index`` or ``video_id`` of
        ``eval_dataset``).

    Returns:
      ``(ids, video_scores)``: the distinct ids in order of first appearance, and
      ``[num_videos, num_classes]`` their mean scores.

    Example:
    >>> ids, mean = average_per_video([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [b"a", b"a", b"b"])
    >>> ids.tolist(), mean.tolist()
    ([b'a', b'b'], [[0.5, 0.5], [1.0, 1.0]])
    """
    scores = np.asarray(scores, dtype=np.float64)
    video_ids = np.asarray(video_ids)
    if scores.ndim != 2 or video_ids.shape != scores.shape[:1]:
        raise ValueError(
            "`scores` must be [num_views, num_classes] and `video_ids` [num_views]. Received: "
            f"scores.shape={scores.shape}, video_ids.shape={video_ids.shape}"
        )
    unique, first, inverse = np.unique(video_ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    slot = rank[inverse.reshape(-1)]
    totals = np.zeros((len(unique), scores.shape[1]))
    np.add.at(totals, slot, scores)
    counts = np.bincount(slot, minlength=len(unique))
    return unique[order], totals / counts[:, None]
