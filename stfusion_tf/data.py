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

Library code only: entry points (``stfusion_tf.train``, ``bench/input.py``) parse flags.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from tfrecords_tools import format as fmt

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keys of the elements of ``eval_dataset``.
CLIPS, LABEL, VIDEO_ID, VIDEO_INDEX, VIEW = "clips", "label", "video_id", "video_index", "view"

_MAKE_TFRECORDS = "python -m pipelines.make_tfrecords --input_dir=... --output_dir=..."


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled from a video and preprocessed (train and eval).

    Stored beside a checkpoint (``to_dict`` / ``from_dict``) so a model is always fed as it was
    trained.

    Args:
      num_frames: T, frames per clip (the paper: 32 or 16).
      stride: s, frame step inside a clip (the paper: 1 or 2).
      random_stride: in training, draw the stride of each clip uniformly from ``[1, stride]``
        (a temporal scale jitter); eval always uses ``stride``.
      crop_size: side of the square training crop (the paper: 224).
      train_short_sides: training scale jitter: each clip is resized so its short side is one of
        these, drawn uniformly, before the random crop (the paper: (256, 288, 320), scale them
        with the data). None: no jitter, training uses ``eval_short_side``.
      eval_short_side: short side of eval frames (the paper: 256).
      eval_crop_size: side of the square eval crops; None: ``crop_size``. The paper tests on
        centre 256 x 256 crops of short side 256 frames (a fully convolutional network).
      flip: random horizontal flip in training (the same for every frame of a clip). Turn it OFF
        for datasets whose labels name directions (Something-Something, the synthetic ``motion``
        task): a flipped "moving left" clip shows "moving right".
      mean, std: per-channel normalisation applied after pixels are mapped to ``value_range``
        (ImageNet statistics by default, as for ImageNet-initialised weights).
      value_range: the (low, high) that pixel values 0 and 255 map to before normalisation.
        ``(0, 1)`` with ImageNet mean/std is the usual input; ``(-1, 1)`` with mean 0 and std 1
        gives [-1, 1] inputs.

    Example:
    >>> spec = ClipSpec(num_frames=8, stride=2, crop_size=112, train_short_sides=(128, 144),
    ...                 eval_short_side=128, flip=False)
    >>> ClipSpec.from_dict(spec.to_dict()) == spec
    True
    >>> spec.span
    15
    """

    num_frames: int = 16
    stride: int = 2
    random_stride: bool = False
    crop_size: int = 224
    train_short_sides: tuple[int, ...] | None = (256, 288, 320)
    eval_short_side: int = 256
    eval_crop_size: int | None = None
    flip: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        for name in ("train_short_sides", "mean", "std", "value_range"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, bytes)):
                try:
                    object.__setattr__(self, name, tuple(value))
                except TypeError:
                    pass  # not iterable: the checks below name it
        _positive_int(self.num_frames, "num_frames")
        _positive_int(self.stride, "stride")
        _positive_int(self.crop_size, "crop_size")
        _positive_int(self.eval_short_side, "eval_short_side")
        if self.eval_crop_size is not None:
            _positive_int(self.eval_crop_size, "eval_crop_size")
        if self.train_short_sides is not None:
            if not isinstance(self.train_short_sides, tuple) or not self.train_short_sides:
                raise ValueError(
                    "`train_short_sides` must be a non-empty sequence of short sides, or None for "
                    f"no scale jitter. Received: train_short_sides={self.train_short_sides!r}"
                )
            for side in self.train_short_sides:
                _positive_int(side, "train_short_sides")
        if min(self.train_sides) < self.crop_size:
            raise ValueError(
                "Every training short side must be >= `crop_size` (a crop cannot be larger than "
                f"the frame). Received: crop_size={self.crop_size}, "
                f"train_short_sides={self.train_short_sides!r}, "
                f"eval_short_side={self.eval_short_side}"
            )
        if self.eval_short_side < self.eval_crop:
            raise ValueError(
                "`eval_short_side` must be >= the eval crop size. Received: "
                f"eval_short_side={self.eval_short_side}, eval_crop_size={self.eval_crop}"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3:
                raise ValueError(
                    f"`{name}` must hold 3 numbers (R, G, B). Received: {name}={value!r}"
                )
        if not all(s > 0 for s in self.std):
            raise ValueError(f"`std` must be > 0 per channel. Received: std={self.std!r}")
        if (
            not isinstance(self.value_range, tuple)
            or len(self.value_range) != 2
            or not self.value_range[0] < self.value_range[1]
        ):
            raise ValueError(
                "`value_range` must be (low, high) with low < high. "
                f"Received: value_range={self.value_range!r}"
            )

    @property
    def span(self) -> int:
        """Frames a clip covers at ``stride``: ``(T - 1) * s + 1``."""
        return (self.num_frames - 1) * self.stride + 1

    @property
    def train_sides(self) -> tuple[int, ...]:
        """The short sides training draws from (``eval_short_side`` when there is no jitter)."""
        return self.train_short_sides or (self.eval_short_side,)

    @property
    def eval_crop(self) -> int:
        return self.eval_crop_size or self.crop_size

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name in ("train_short_sides", "mean", "std", "value_range"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ClipSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown ClipSpec fields: {unknown}. Received: {data!r}")
        return cls(**data)


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
        count = int(json.load(f).get("num_examples", 0))
    if count < 1:
        raise ValueError(
            f"Split {split!r} has no examples (manifest {path!r}): every video failed or the "
            f"split is empty; see {fmt.failures_path(records_dir, split)!r} and run "
            f"{_MAKE_TFRECORDS} again."
        )
    return count


def split_files(records_dir: str, split: str) -> list[str]:
    """The shards of ``split`` under ``records_dir``, sorted (a clear error when there are none)."""
    return _resolve_files(fmt.shard_pattern(records_dir, split))


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


# --- Phase: sample frame indices ----------------------------------------------------------------


def clip_indices(start, stride, num_frames: int, video_frames) -> tf.Tensor:
    """``num_frames`` indices ``start, start + stride, ...``, clamped to the last frame.

    Clamping pads a video shorter than the clip with its last frame (see the module docstring).
    """
    steps = tf.range(num_frames, dtype=tf.int32) * tf.cast(stride, tf.int32)
    last = tf.maximum(tf.cast(video_frames, tf.int32) - 1, 0)
    return tf.minimum(tf.cast(start, tf.int32) + steps, last)


def sample_train_indices(video_frames, spec: ClipSpec, seed) -> tf.Tensor:
    """``[T]`` frame indices of one training clip: a uniform start (and stride, when
    ``spec.random_stride``) such that the clip lies inside the video when it fits.

    ``seed``: a ``[2]`` int tensor (stateless random ops: the same seed, the same clip).
    """
    stride_seed, start_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    n = tf.cast(video_frames, tf.int32)
    if spec.random_stride and spec.stride > 1:
        stride = tf.random.stateless_uniform(
            [], stride_seed, minval=1, maxval=spec.stride + 1, dtype=tf.int32
        )
    else:
        stride = tf.constant(spec.stride, tf.int32)
    span = (spec.num_frames - 1) * stride + 1
    max_start = tf.maximum(n - span, 0)
    start = tf.random.stateless_uniform(
        [], start_seed, minval=0, maxval=max_start + 1, dtype=tf.int32
    )
    return clip_indices(start, stride, spec.num_frames, n)


def sample_eval_indices(video_frames, spec: ClipSpec, num_clips: int) -> tf.Tensor:
    """``[num_clips, T]`` indices of evenly spaced clips at ``spec.stride``.

    Starts are ``linspace(0, num_frames - span, num_clips)`` rounded (the first clip starts at
    the first frame, the last ends at the last frame); one clip is the centre clip. A video
    shorter than the span gives ``num_clips`` identical, padded clips.
    """
    _positive_int(num_clips, "num_clips")
    n = tf.cast(video_frames, tf.int32)
    delta = tf.cast(tf.maximum(n - spec.span, 0), tf.float32)
    if num_clips == 1:
        starts = tf.reshape(tf.floor(delta / 2), [1])
    else:
        starts = tf.floor(tf.linspace(0.0, delta, num_clips) + 0.5)
    starts = tf.cast(starts, tf.int32)
    return tf.map_fn(
        lambda start: clip_indices(start, spec.stride, spec.num_frames, n),
        starts,
        fn_output_signature=tf.TensorSpec([spec.num_frames], tf.int32),
    )


# --- Phase: decode only the chosen JPEGs --------------------------------------------------------


def decode_frames(jpegs: tf.Tensor, crop_window=None) -> tf.Tensor:
    """Decodes a ``[T]`` vector of JPEG strings into ``[T, H, W, 3]`` uint8.

    ``crop_window`` (``[y, x, height, width]``, the same for every frame) decodes only that window
    (``tf.io.decode_and_crop_jpeg``: libjpeg skips the rows above and below it and converts only
    the window's pixels). With a static ``T`` (always, after sampling) the decodes are unrolled:
    ``T`` independent ops, no loop to run through.
    """

    def decode(jpeg):
        if crop_window is None:
            return tf.io.decode_jpeg(jpeg, channels=3)
        return tf.io.decode_and_crop_jpeg(jpeg, crop_window, channels=3)

    if jpegs.shape.rank == 1 and jpegs.shape[0] is not None:
        return tf.stack([decode(jpegs[i]) for i in range(jpegs.shape[0])])
    return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


# --- Phase: preprocess ---------------------------------------------------------------------------


def normalize(frames: tf.Tensor, spec: ClipSpec) -> tf.Tensor:
    """Pixels (0..255, any dtype) -> ``value_range`` -> ``(x - mean) / std``, float32.

    Written as one multiply-add with per-channel constants, applied to the frames viewed as rows
    of ``width * 3`` values (a broadcast over a last axis of 3 is several times slower in TF).
    """
    low, high = spec.value_range
    mean, std = np.asarray(spec.mean), np.asarray(spec.std)
    scale = tf.constant((high - low) / 255.0 / std, tf.float32)
    offset = tf.constant((low - mean) / std, tf.float32)
    shape = tf.shape(frames)
    rows = tf.reshape(tf.cast(frames, tf.float32), [-1, shape[-2] * 3])
    rows = rows * tf.tile(scale, shape[-2:-1]) + tf.tile(offset, shape[-2:-1])
    return tf.reshape(rows, shape)


def resize_short_side(frames: tf.Tensor, short_side) -> tf.Tensor:
    """Resizes ``[T, H, W, 3]`` so that ``min(H, W) == short_side`` (aspect kept), float32."""
    shape = tf.shape(frames)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    scale = tf.cast(short_side, tf.float32) / tf.minimum(height, width)
    size = tf.cast(tf.round(tf.stack([height, width]) * scale), tf.int32)
    size = tf.maximum(size, tf.cast(short_side, tf.int32))
    return tf.image.resize(frames, size, method="bilinear", antialias=True)


def train_crop_window(frame_shape, spec: ClipSpec, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """Scale jitter + random crop, as a window of the STORED frame: ``([y, x, h, w], flip)``.

    Resizing a frame to short side ``S`` and cropping ``crop_size`` is the same as cropping a
    ``crop_size * short / S`` square of the stored frame and resizing it to ``crop_size``; the
    second way decodes and resizes only the pixels the crop keeps. One window (and one flip
    decision) per clip: every frame gets the same crop, so the motion inside the clip is kept.
    """
    side_seed, y_seed, x_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    height, width = tf.cast(frame_shape[0], tf.int32), tf.cast(frame_shape[1], tf.int32)
    sides = tf.constant(spec.train_sides, tf.float32)
    choice = tf.random.stateless_uniform(
        [], side_seed, minval=0, maxval=len(spec.train_sides), dtype=tf.int32
    )
    short = tf.minimum(height, width)
    window = tf.cast(
        tf.round(spec.crop_size * tf.cast(short, tf.float32) / sides[choice]), tf.int32
    )
    window = tf.clip_by_value(window, 1, short)
    y = tf.random.stateless_uniform(
        [], y_seed, minval=0, maxval=height - window + 1, dtype=tf.int32
    )
    x = tf.random.stateless_uniform([], x_seed, minval=0, maxval=width - window + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([], flip_seed) < 0.5 if spec.flip else tf.constant(False)
    return tf.stack([y, x, window, window]), flip


def eval_crops(frames: tf.Tensor, crop_size: int, num_crops: int) -> tf.Tensor:
    """``[num_crops, T, crop, crop, 3]`` square crops of ``[T, H, W, 3]`` frames.

    One crop: the centre. Three crops (the usual "3-crop" test protocol): the start, centre and
    end along the LONG side (left / centre / right of a landscape frame, top / centre / bottom of
    a portrait one), centred along the short side; with the short side resized to the crop size
    the three together cover the whole frame.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 or 3. Received: num_crops={num_crops!r}")
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    centre_y, centre_x = (height - crop_size) // 2, (width - crop_size) // 2
    if num_crops == 1:
        offsets = [(centre_y, centre_x)]
    else:
        landscape = width >= height
        offsets = [
            (
                tf.where(landscape, centre_y, along),
                tf.where(landscape, along_x, centre_x),
            )
            for along, along_x in (
                (0, 0),
                (centre_y, centre_x),
                (height - crop_size, width - crop_size),
            )
        ]
    return tf.stack(
        [frames[:, y : y + crop_size, x : x + crop_size, :] for y, x in offsets], axis=0
    )


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


def train_dataset(
    file_pattern_or_list,
    spec: ClipSpec,
    global_batch_size: int,
    *,
    seed: int,
    shuffle_buffer: int,
    deterministic: bool = False,
    repeat: bool = True,
    input_context: tf.distribute.InputContext | None = None,
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

    Batches drop the remainder (a training step sees full batches).
    """
    _positive_int(global_batch_size, "global_batch_size")
    _positive_int(shuffle_buffer, "shuffle_buffer")
    files = _resolve_files(file_pattern_or_list)
    batch_size = (
        input_context.get_per_replica_batch_size(global_batch_size)
        if input_context is not None
        else global_batch_size
    )
    base_seed = tf.constant([seed, _pipeline_id(input_context)], tf.int64)

    def sample(index, serialized):
        features = fmt.parse(serialized)
        jpegs = features[fmt.IMAGE_ENCODED]
        clip_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
        index_seed, augment_seed = tf.unstack(tf.random.experimental.stateless_split(clip_seed, 2))
        indices = sample_train_indices(tf.shape(jpegs)[0], spec, index_seed)
        label = tf.cast(features[fmt.LABEL_INDEX], tf.int32)
        return tf.gather(jpegs, indices), label, augment_seed

    def decode_and_preprocess(jpegs, label, augment_seed):
        window, flip = train_crop_window(tf.io.extract_jpeg_shape(jpegs[0]), spec, augment_seed)
        frames = decode_frames(jpegs, crop_window=window)
        # Flip the uint8 window before resizing: the same result (bilinear resizing is mirror
        # symmetric) on a quarter of the bytes.
        frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
        frames = tf.image.resize(frames, [spec.crop_size, spec.crop_size], method="bilinear")
        frames = normalize(frames, spec)
        frames.set_shape([spec.num_frames, spec.crop_size, spec.crop_size, 3])
        return frames, label

    dataset = _read(
        files,
        shuffle_seed=seed + _pipeline_id(input_context),
        deterministic=deterministic,
        input_context=input_context,
    )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.enumerate()
    dataset = dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    dataset = dataset.shuffle(shuffle_buffer, seed=seed + _pipeline_id(input_context))
    dataset = dataset.map(
        decode_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
    )
    # Parallel batching: copying B float clips into one tensor is otherwise one serial thread.
    dataset = dataset.batch(
        batch_size,
        drop_remainder=True,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    file_pattern_or_list,
    spec: ClipSpec,
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
    _positive_int(batch_size, "batch_size")
    _positive_int(num_clips, "num_clips")
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 or 3. Received: num_crops={num_crops!r}")
    files = _resolve_files(file_pattern_or_list)
    crop = spec.eval_crop

    def sample(index, serialized):
        features = fmt.parse(serialized)
        jpegs = features[fmt.IMAGE_ENCODED]
        indices = sample_eval_indices(tf.shape(jpegs)[0], spec, num_clips)  # [n, T]
        repeat = [num_clips]
        return {
            "jpegs": tf.gather(jpegs, indices),
            LABEL: tf.fill(repeat, tf.cast(features[fmt.LABEL_INDEX], tf.int32)),
            VIDEO_ID: tf.fill(repeat, features[fmt.VIDEO_FILENAME]),
            VIDEO_INDEX: tf.fill(repeat, index),
            "clip": tf.range(num_clips, dtype=tf.int32),
        }

    def views(clip):
        frames = resize_short_side(decode_frames(clip["jpegs"]), spec.eval_short_side)
        clips = normalize(eval_crops(frames, crop, num_crops), spec)
        clips.set_shape([num_crops, spec.num_frames, crop, crop, 3])
        repeat = [num_crops]
        return {
            CLIPS: clips,
            LABEL: tf.fill(repeat, clip[LABEL]),
            VIDEO_ID: tf.fill(repeat, clip[VIDEO_ID]),
            VIDEO_INDEX: tf.fill(repeat, clip[VIDEO_INDEX]),
            VIEW: clip["clip"] * num_crops + tf.range(num_crops, dtype=tf.int32),
        }

    dataset = _read(files, shuffle_seed=None, deterministic=True, input_context=input_context)
    dataset = dataset.enumerate()
    dataset = dataset.map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.unbatch()  # one element per clip
    dataset = dataset.map(views, num_parallel_calls=tf.data.AUTOTUNE)
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
