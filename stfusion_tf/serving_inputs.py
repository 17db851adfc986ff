"""What a serving request may hold, checked inside the exported graph before any work is done.

A SavedModel's signature shapes are advice: neither TF Serving nor a loaded function holds a
request to them, and what fails deep in the graph reaches a client as a message about a concat
or a stack it never wrote. So each signature's input first passes through these checks, each a
``tf.debugging`` op whose message carries the text; TF Serving answers it as the request's
``INVALID_ARGUMENT`` status message. A check changes no value: a valid request gets the answer
it got without them.

- ``checked_clips`` (``serving_default``): the shape ``[batch, T, crop, crop, 3]`` (rank first,
  so a wrong rank says what was expected instead of failing in the comparison) and finite
  values; a NaN or Inf would otherwise come back as finite, plausible probabilities.
- ``checked_frames`` (``serve_frames``): the shape ``[batch, T]``; each frame a complete JPEG or
  PNG (PNG accepted on purpose: lossless, and decoded by the same op); and, read from the image
  header without decoding, at most ``max_frame_pixels`` pixels (a 1 MB request of six
  8000 x 8000 JPEGs would decode to over a gigabyte) and the size of its clip's first frame (one
  clip's frames are cropped alike, as the records' frames are). The messages name the clip and
  frame. "Complete" means the image's end marker is present (JPEG ``FF D9``, PNG ``IEND``): a
  frame cut short, the common way a frame is damaged in transit, is named; one damaged inside
  its compressed data still fails in the decoder, without the frame's index.

Example: the checks of ``serving_default`` in a ``tf.function``, as a signature runs them.
>>> from stfusion_tf.preprocessing import PreprocessingSpec
>>> spec = PreprocessingSpec(num_frames=2, crop_size=4, train_short_sides=None,
...                          eval_short_side=4, flip=False)
>>> signature = tf.function(lambda clips: checked_clips(clips, spec))
>>> def refusal(clips):  # the line of the error that a client reads
...     try:
...         signature(tf.constant(clips, tf.float32))
...     except tf.errors.InvalidArgumentError as e:
...         line = next(line for line in e.message.splitlines() if "`clips`" in line)
...         return line.split("}} ")[-1]  # after the name of the function
>>> signature(tf.fill([1, 2, 4, 4, 3], 9.0)).shape  # a valid clip passes unchanged
TensorShape([1, 2, 4, 4, 3])
>>> print(refusal(tf.zeros([2, 4, 4, 3])))
assertion failed: [`clips` must have shape [batch, 2, 4, 4, 3], batch >= 1 (float32 RGB in [0, 255]). Received shape:] [2 4 4 3]
>>> print(refusal(tf.fill([1, 2, 4, 4, 3], float("nan"))))
`clips` must hold finite numbers (RGB in [0, 255]) : Tensor had NaN values
"""

from __future__ import annotations

import tensorflow as tf

from stfusion_tf import signatures as api
from stfusion_tf.preprocessing import PreprocessingSpec

# 2048 x 2048: a few megapixels, well above any frame a thin client should send (the records
# store frames at a short side of a few hundred pixels; the model sees ``eval_short_side``).
MAX_FRAME_PIXELS = 2048 * 2048
JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
# A PNG's IHDR chunk follows its 8-byte signature: length, "IHDR", width, height (big-endian).
PNG_SIZE_OFFSET, PNG_HEADER_BYTES = 16, 33


def _checked(tensor, ok, message: str, data):
    """``tensor`` once ``ok`` holds; otherwise an ``InvalidArgumentError`` with ``message`` and
    ``data`` (the offending values: ``tf.where`` of a ``[clip, frame]`` mask names them). Checks
    chained through their outputs run in order: the first that fails is the one reported."""
    with tf.control_dependencies([tensor]):  # after the checks that made ``tensor``
        check = tf.debugging.Assert(ok, [message, *data], summarize=64)
    with tf.control_dependencies([check]):
        return tf.identity(tensor)


def checked_shape(tensor, expected_shape: list[int], name: str, what: str):
    """``tensor`` with a run-time check that it is ``[batch, *expected_shape]``.

    The rank is compared through a padded copy of the shape, so that a wrong rank fails the
    check with its message rather than the comparison with a broadcast error."""
    rank = len(expected_shape) + 1
    shape = tf.shape(tensor)
    padded = tf.concat([shape, tf.zeros([rank], tf.int32)], axis=0)[:rank]
    ok = tf.logical_and(
        tf.logical_and(tf.equal(tf.size(shape), rank), padded[0] > 0),
        tf.reduce_all(tf.equal(padded[1:], tf.constant(expected_shape, tf.int32))),
    )
    dims = ", ".join(str(d) for d in ["batch", *expected_shape])
    message = f"`{name}` must have shape [{dims}], batch >= 1 ({what}). Received shape:"
    return _checked(tensor, ok, message, [shape])


def checked_clips(clips, spec: PreprocessingSpec):
    """``serving_default``'s clips, checked: ``[batch, T, crop, crop, 3]`` finite numbers."""
    clips = checked_shape(
        clips, list(spec.eval_clip_shape), api.CLIPS_INPUT, "float32 RGB in [0, 255]"
    )
    return tf.debugging.check_numerics(
        clips, f"`{api.CLIPS_INPUT}` must hold finite numbers (RGB in [0, 255])"
    )


def _frame_format(frames):
    """``[b, T]`` encoded frames -> ``(is_jpeg, is_png, complete)``, from their bytes only."""
    is_jpeg = tf.equal(tf.strings.substr(frames, 0, len(JPEG_START)), JPEG_START)
    is_png = tf.logical_and(
        tf.equal(tf.strings.substr(frames, 0, len(PNG_START)), PNG_START),
        tf.strings.length(frames) >= PNG_HEADER_BYTES,
    )
    flat = tf.reshape(frames, [-1])

    def holds(marker):
        parts = tf.strings.split(flat, sep=marker).row_lengths()
        return tf.reshape(parts > 1, tf.shape(frames))

    complete = tf.where(is_png, holds(PNG_END), holds(JPEG_END))
    return is_jpeg, is_png, complete


def _png_size(png):
    """``[height, width]`` int64 of a PNG, from its IHDR chunk."""
    width_height = tf.io.decode_raw(
        tf.strings.substr(png, PNG_SIZE_OFFSET, 8), tf.int32, little_endian=False
    )
    return tf.cast(tf.reverse(width_height, [0]), tf.int64)


def _frame_sizes(frames, is_png):
    """``[b, T, 2]`` (height, width) of every frame, read from its header (nothing decoded)."""

    def size(args):
        frame, png = args
        return tf.cond(
            png,
            lambda: _png_size(frame),
            lambda: tf.io.extract_jpeg_shape(frame, output_type=tf.int64)[:2],
        )

    sizes = tf.map_fn(
        size,
        (tf.reshape(frames, [-1]), tf.reshape(is_png, [-1])),
        fn_output_signature=tf.TensorSpec([2], tf.int64),
    )
    return tf.reshape(sizes, tf.concat([tf.shape(frames), [2]], axis=0))


def checked_frames(frames, spec: PreprocessingSpec, max_frame_pixels: int = MAX_FRAME_PIXELS):
    """``serve_frames``' frames, checked before any is decoded: ``[batch, T]`` complete JPEG or
    PNG images of at most ``max_frame_pixels`` pixels, one size per clip."""
    name = api.FRAMES_INPUT
    frames = checked_shape(frames, [spec.num_frames], name, "JPEG or PNG bytes")
    is_jpeg, is_png, complete = _frame_format(frames)
    image = tf.logical_or(is_jpeg, is_png)
    frames = _checked(
        frames,
        tf.reduce_all(image),
        f"`{name}` must be JPEG (or PNG) images; these [clip, frame] are not a JPEG/PNG image "
        "(empty, another format, or not an image):",
        [tf.where(tf.logical_not(image))],
    )
    frames = _checked(
        frames,
        tf.reduce_all(complete),
        f"`{name}`: these [clip, frame] are cut short (no end-of-image marker): send whole files:",
        [tf.where(tf.logical_not(complete))],
    )
    sizes = _frame_sizes(frames, is_png)
    pixels = sizes[..., 0] * sizes[..., 1]
    large = pixels > max_frame_pixels
    frames = _checked(
        frames,
        tf.logical_not(tf.reduce_any(large)),
        f"`{name}`: a frame may hold at most {max_frame_pixels} pixels (height x width, set at "
        f"export): resize frames to a short side near {spec.eval_short_side} (what the model sees) "
        "before sending them. Received [clip, frame] and [height, width]:",
        [tf.where(large), tf.boolean_mask(sizes, large)],
    )
    differs = tf.reduce_any(tf.not_equal(sizes, sizes[:, :1]), axis=-1)
    return _checked(
        frames,
        tf.logical_not(tf.reduce_any(differs)),
        f"`{name}`: all frames of a clip must have one size (that of its frame 0). Received "
        "[clip, frame] and [height, width] of those that differ:",
        [tf.where(differs), tf.boolean_mask(sizes, differs)],
    )
