"""The preprocessing contract: ONE spec, and the per-clip transforms every path builds from it.

A model only means what it means when it is fed the way it was trained. The usual ways that
breaks (a served model without the ``/255``, an unknown mean/std, frames extracted at another
frame rate or size than the training data, a reversed channel order) all come from the numbers
of preprocessing living in several places. Here they live in ``PreprocessingSpec`` only:

- the conversion part (``fps``, ``frame_short_side``, ``jpeg_quality``): how frames were
  extracted from the videos into TFRecords. It is copied from the records' manifest
  (``from_records``; ``check_records`` refuses records converted otherwise), and the ``predict``
  path decodes a video file with exactly these options, so its JPEGs are the bytes the
  conversion would have stored;
- the clip part (``num_frames``, ``stride``, crops, short sides, flip policy): how clips are
  sampled from the stored frames, in training and evaluation;
- the pixel part (``value_range``, ``mean``, ``std``, ``channel_order``, ``resize_method``): how
  pixels become the network's input.

The spec is written beside every checkpoint (``stfusion_tf.checkpoints``), into the SavedModel
and its model card (``stfusion_tf.export``); the tf.data pipeline (``stfusion_tf.data``), the
serving signatures and ``predict`` call the functions below with it. No other module holds a
mean, a crop size or a frame rate of its own.

The transforms are the explicit phases of DMVR: sample frame indices -> decode only those JPEGs
-> resize / crop -> normalise. They are plain TensorFlow functions of one clip, so the tf.data
pipeline and a SavedModel signature run the same graph.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from stfusion_tf import checks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_METHODS = ("bilinear", "bicubic", "area", "lanczos3", "nearest")
# The conversion's options (``pipelines.convert.ConvertOptions``) that decide the stored pixels,
# with the spec field each one fills.
CONVERSION_FIELDS = {"fps": "fps", "short_side": "frame_short_side", "jpeg_quality": "jpeg_quality"}


@dataclasses.dataclass(frozen=True)
class PreprocessingSpec:
    """How frames are extracted, clips sampled and pixels normalised (train, eval, serving).

    Serialisable (``to_dict`` / ``from_dict`` / ``to_json``), stored with every checkpoint and
    embedded in every export, so a model is always fed as it was trained.

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
        (ImageNet statistics by default, as for ImageNet-initialised weights), in
        ``channel_order``.
      value_range: the (low, high) that pixel values 0 and 255 map to before normalisation.
        ``(0, 1)`` with ImageNet mean/std is the usual input; ``(-1, 1)`` with mean 0 and std 1
        gives [-1, 1] inputs.
      channel_order: ``RGB`` (decoded JPEGs) or ``BGR`` (weights converted from Caffe-style
        models): the channel order of the network's input, and of ``mean`` / ``std``.
      resize_method: the ``tf.image.resize`` method of every resize (antialiased).
      fps: the frame rate frames were extracted at (None: every frame of the video).
      frame_short_side: short side of the extracted frames (None or 0: the video's own size).
      jpeg_quality: JPEG quality of the extracted frames (None: unknown, e.g. a spec made
        without records; ``predict`` needs it).

    Example:
    >>> spec = PreprocessingSpec(num_frames=8, stride=2, crop_size=112,
    ...                          train_short_sides=(128, 144), eval_short_side=128, flip=False)
    >>> PreprocessingSpec.from_json(spec.to_json()) == spec
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
    channel_order: str = "RGB"
    resize_method: str = "bilinear"
    fps: float | None = None
    frame_short_side: int | None = None
    jpeg_quality: int | None = None

    def __post_init__(self):
        for name in ("train_short_sides", "mean", "std", "value_range"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, bytes)):
                try:
                    object.__setattr__(self, name, tuple(value))
                except TypeError:
                    pass  # not iterable: the checks below name it
        checks.positive_int(self.num_frames, "num_frames")
        checks.positive_int(self.stride, "stride")
        checks.positive_int(self.crop_size, "crop_size")
        checks.positive_int(self.eval_short_side, "eval_short_side")
        if self.eval_crop_size is not None:
            checks.positive_int(self.eval_crop_size, "eval_crop_size")
        if self.train_short_sides is not None:
            if not isinstance(self.train_short_sides, tuple) or not self.train_short_sides:
                raise ValueError(
                    "`train_short_sides` must be a non-empty sequence of short sides, or None for "
                    f"no scale jitter. Received: train_short_sides={self.train_short_sides!r}"
                )
            for side in self.train_short_sides:
                checks.positive_int(side, "train_short_sides")
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
                    f"`{name}` must hold 3 numbers (one per channel). Received: {name}={value!r}"
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
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"`channel_order` must be one of {CHANNEL_ORDERS}. "
                f"Received: channel_order={self.channel_order!r}"
            )
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(
                f"`resize_method` must be one of {RESIZE_METHODS}. "
                f"Received: resize_method={self.resize_method!r}"
            )
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"`fps` must be > 0 or None. Received: fps={self.fps!r}")
        if self.frame_short_side is not None and self.frame_short_side < 0:
            raise ValueError(
                f"`frame_short_side` must be >= 0 or None. Received: {self.frame_short_side!r}"
            )
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(
                f"`jpeg_quality` must be in [1, 100] or None. Received: {self.jpeg_quality!r}"
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

    @property
    def eval_clip_shape(self) -> tuple[int, int, int, int]:
        """``(T, crop, crop, 3)``: one evaluation (and serving) view."""
        return (self.num_frames, self.eval_crop, self.eval_crop, 3)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name in ("train_short_sides", "mean", "std", "value_range"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessingSpec:
        return checks.dataclass_from_dict(cls, data)

    @classmethod
    def from_json(cls, text: str) -> PreprocessingSpec:
        return cls.from_dict(json.loads(text))

    def with_conversion(self, options: dict) -> PreprocessingSpec:
        """This spec with its conversion part taken from a manifest's ``options``."""
        values = {field: options.get(key) for key, field in CONVERSION_FIELDS.items()}
        return dataclasses.replace(self, **values)

    def check_conversion(self, options: dict, where: str) -> None:
        """Raises when records were converted with other pixel options than this spec says.

        ``options``: the ``options`` of a split's manifest; ``where``: names the records in the
        message.
        """
        diffs = [
            f"{key}: {options.get(key)!r} in the records, {getattr(self, field)!r} in the spec"
            for key, field in CONVERSION_FIELDS.items()
            if options.get(key) != getattr(self, field)
        ]
        if diffs:
            raise ValueError(
                f"The records {where} were converted with other options than the model was "
                f"trained on ({'; '.join(diffs)}): the model would see other pixels than in "
                "training. Convert the videos again with those options "
                "(python -m pipelines.make_tfrecords --short_side=... --fps=... --jpeg_quality=...)."
            )


# --- Phase: sample frame indices ----------------------------------------------------------------


def clip_indices(start, stride, num_frames: int, video_frames) -> tf.Tensor:
    """``num_frames`` indices ``start, start + stride, ...``, clamped to the last frame.

    Clamping pads a video shorter than the clip with its last frame (see ``stfusion_tf.data``).
    """
    steps = tf.range(num_frames, dtype=tf.int32) * tf.cast(stride, tf.int32)
    last = tf.maximum(tf.cast(video_frames, tf.int32) - 1, 0)
    return tf.minimum(tf.cast(start, tf.int32) + steps, last)


def sample_train_indices(video_frames, spec: PreprocessingSpec, seed) -> tf.Tensor:
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


def sample_eval_indices(video_frames, spec: PreprocessingSpec, num_clips: int) -> tf.Tensor:
    """``[num_clips, T]`` indices of evenly spaced clips at ``spec.stride``.

    Starts are ``linspace(0, num_frames - span, num_clips)`` rounded (the first clip starts at
    the first frame, the last ends at the last frame); one clip is the centre clip. A video
    shorter than the span gives ``num_clips`` identical, padded clips.
    """
    checks.positive_int(num_clips, "num_clips")
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
    """Decodes a ``[T]`` vector of JPEG strings into ``[T, H, W, 3]`` uint8 (RGB).

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


def normalize(frames: tf.Tensor, spec: PreprocessingSpec) -> tf.Tensor:
    """RGB pixels (0..255, any dtype) -> ``channel_order`` -> ``value_range`` ->
    ``(x - mean) / std``, float32.

    Written as one multiply-add with per-channel constants, applied to the frames viewed as rows
    of ``width * 3`` values (a broadcast over a last axis of 3 is several times slower in TF).
    """
    low, high = spec.value_range
    mean, std = np.asarray(spec.mean), np.asarray(spec.std)
    scale = tf.constant((high - low) / 255.0 / std, tf.float32)
    offset = tf.constant((low - mean) / std, tf.float32)
    frames = tf.cast(frames, tf.float32)
    if spec.channel_order == "BGR":
        frames = tf.reverse(frames, axis=[-1])
    shape = tf.shape(frames)
    rows = tf.reshape(frames, [-1, shape[-2] * 3])
    rows = rows * tf.tile(scale, shape[-2:-1]) + tf.tile(offset, shape[-2:-1])
    return tf.reshape(rows, shape)


def resize(frames: tf.Tensor, size, spec: PreprocessingSpec) -> tf.Tensor:
    """``[..., H, W, 3]`` -> ``[..., size[0], size[1], 3]`` float32 with ``spec.resize_method``."""
    return tf.image.resize(frames, size, method=spec.resize_method, antialias=True)


def resize_short_side(frames: tf.Tensor, short_side, spec: PreprocessingSpec) -> tf.Tensor:
    """Resizes ``[T, H, W, 3]`` so that ``min(H, W) == short_side`` (aspect kept), float32."""
    shape = tf.shape(frames)
    height, width = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
    scale = tf.cast(short_side, tf.float32) / tf.minimum(height, width)
    size = tf.cast(tf.round(tf.stack([height, width]) * scale), tf.int32)
    size = tf.maximum(size, tf.cast(short_side, tf.int32))
    return resize(frames, size, spec)


def train_crop_window(frame_shape, spec: PreprocessingSpec, seed) -> tuple[tf.Tensor, tf.Tensor]:
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


def train_clip(jpegs: tf.Tensor, spec: PreprocessingSpec, seed) -> tf.Tensor:
    """``[T]`` JPEGs of a sampled training clip -> ``[T, crop, crop, 3]`` normalised float32:
    scale jitter + random crop (decoding only the window), optional flip, resize, normalise."""
    window, flip = train_crop_window(tf.io.extract_jpeg_shape(jpegs[0]), spec, seed)
    frames = decode_frames(jpegs, crop_window=window)
    # Flip the uint8 window before resizing: the same result (bilinear resizing is mirror
    # symmetric) on a quarter of the bytes.
    frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
    frames = resize(frames, [spec.crop_size, spec.crop_size], spec)
    frames = normalize(frames, spec)
    frames.set_shape([spec.num_frames, spec.crop_size, spec.crop_size, 3])
    return frames


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


def eval_views(frames: tf.Tensor, spec: PreprocessingSpec, num_crops: int = 1) -> tf.Tensor:
    """Decoded ``[T, H, W, 3]`` RGB frames (0..255) -> ``[num_crops, T, crop, crop, 3]``
    normalised views: short side resized to ``spec.eval_short_side``, ``num_crops`` crops.

    The evaluation pipeline and the serving signatures (``stfusion_tf.export``) both make their
    views with this function: what the served model sees is what evaluation measured.
    """
    frames = resize_short_side(frames, spec.eval_short_side, spec)
    views = normalize(eval_crops(frames, spec.eval_crop, num_crops), spec)
    views.set_shape([num_crops, *spec.eval_clip_shape])
    return views
