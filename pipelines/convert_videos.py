"""``ConvertVideos``: listed videos -> converted videos and failure records, as one Beam transform.

    entries --Distribute--> Convert --(tagged results)--+--Converted--> ConvertedVideo
                                                        +--Failures---> failure record (dict)

- ``Convert`` runs ``video_conversion.convert_video`` on each video, its decoding in an
  ``isolated.IsolatedProcess`` when ``ConvertOptions.isolate_decoder``: a Python error, a decoder
  that hangs and a decoder that crashes its process (a segfault in FFmpeg) on a file all become
  that file's failure record (``CONVERSION_ERRORS``), with its reason and the ``videos_failed``
  counter, instead of stopping the job. So ``examples + failures == inputs``, always. Any other
  exception (a bug, a full disk under the staging folder) stops the job: it is not the video's
  fault, and a failure record would hide it.
- ``Convert`` has ONE output, ``(CONVERTED, ConvertedVideo)`` or ``(FAILED, record)``, which two
  single-output steps select from. Not ``with_outputs`` / ``with_exception_handling`` nor
  ``beam.Partition``: each is one multi-output ParDo, and the DaskRunner (apache-beam 2.77) hands
  every output of such a ParDo to each of its consumers.
"""

import logging
import time

import apache_beam as beam
import av
from apache_beam.metrics import Metrics

from pipelines import datasets, isolated, video_conversion
from tfrecords_tools import video_io

NAMESPACE = "stfusion"  # of the job's Beam counters
CONVERTED, FAILED = "converted", "failed"

# What makes a video a failure record: it points outside the input root, FFmpeg cannot read it
# (also an FFmpeg error ``video_io`` did not word itself), it is a still image, or its decoder
# crashed or hung. (An entry the listing refused, ``VideoEntry.refused``, is one without a try.)
CONVERSION_ERRORS = (
    datasets.UnsafePathError,
    video_io.VideoDecodeError,
    video_conversion.NotAVideoError,
    av.FFmpegError,
    isolated.ProcessCrashed,
    isolated.ProcessTimedOut,
)
REFUSED_AT_LISTING = "RefusedAtListing"  # the ``error`` of a failure record for such an entry

_LOG = logging.getLogger("stfusion.convert")


def failure_reason(error: Exception) -> str:
    """What a person reads in ``<split>.failures-<hash>.jsonl``: the exception's message (its
    repr when it has several arguments or none), prefixed for a crashed or hung decoder."""
    args = error.args
    reason = args[0] if len(args) == 1 and isinstance(args[0], str) else repr(error)
    if isinstance(error, isolated.ProcessTimedOut):
        return f"timed out: the decoder {reason} (--timeout_s)"
    if isinstance(error, isolated.ProcessCrashed):
        return f"the decoder crashed on this file: {reason}"
    return reason


def failure_record(entry: datasets.VideoEntry, error: Exception | None) -> dict:
    """A video that could not be converted, as one line of ``<split>.failures-<hash>.jsonl``;
    ``error`` None for an entry the listing refused (its ``refused`` is the reason)."""
    return {
        "split": entry.split,
        "path": entry.path,
        "label": entry.label,
        "error": REFUSED_AT_LISTING if error is None else type(error).__name__,
        "reason": entry.refused if error is None else failure_reason(error),
    }


class _ConvertVideoDoFn(beam.DoFn):
    """``convert_video`` per video -> ``(CONVERTED, video)`` or ``(FAILED, failure record)``;
    counts both (Beam metrics) and logs progress from each worker."""

    def __init__(self, encode_fn, input_dir, class_index, options, frame_rate, staging_dir):
        self._encode_fn = encode_fn
        self._args = (input_dir, class_index, options, frame_rate, staging_dir)
        self._options = options

    def setup(self):
        self._runner = None
        if self._options.isolate_decoder:
            self._runner = isolated.IsolatedProcess(self._options.timeout_s)
        self._done, self._start = 0, time.time()

    def process(self, entry: datasets.VideoEntry):
        if entry.refused:
            Metrics.counter(NAMESPACE, "videos_failed").inc()
            yield FAILED, failure_record(entry, None)
            return
        try:
            video = video_conversion.convert_video(
                entry, *self._args, encode_fn=self._encode_fn, runner=self._runner
            )
        except CONVERSION_ERRORS as e:
            Metrics.counter(NAMESPACE, "videos_failed").inc()
            yield FAILED, failure_record(entry, e)
            return
        Metrics.counter(NAMESPACE, "videos_converted").inc()
        Metrics.counter(NAMESPACE, "frames_written").inc(video.num_frames)
        self._done += 1
        if self._done % 25 == 0:
            rate = self._done / max(time.time() - self._start, 1e-9)
            _LOG.info("converted %d videos in this worker (%.1f videos/s)", self._done, rate)
        yield CONVERTED, video

    def teardown(self):
        if self._runner is not None:
            self._runner.close()


def _tagged(result: tuple, tag: str):
    """The value of ``result`` if it carries ``tag`` (one branch of the tagged results)."""
    if result[0] == tag:
        yield result[1]


class ConvertVideos(beam.PTransform):
    """Converts every listed video into a staged record, or a failure record with its reason.

    Args:
      input_dir: the dataset's root; listed paths are relative to it (and must stay inside it).
      class_names: the label map (``clip/label/index`` = position).
      options: a ``video_conversion.ConvertOptions``.
      staging_dir: an existing folder that receives one record file per converted video.
      frame_rate: frames per second of frame-folder datasets (``DatasetListing.frame_rate``).
      encode_fn: replaces ``video_io.encode_video`` (same signature, module-level so the helper
        process can import it): tests make the decoder crash or hang with it.

    Input: a PCollection of ``datasets.VideoEntry``.
    Output: ``(converted, failures)``: PCollections of ``video_conversion.ConvertedVideo`` and of
    failure records (dicts: split, path, label, error, reason), one element per input in all.

    Example (a listed video that is not there becomes a failure record):

    >>> import tempfile
    >>> from pipelines.datasets import VideoEntry
    >>> from pipelines.video_conversion import ConvertOptions
    >>> options = ConvertOptions(short_side=128, isolate_decoder=False)
    >>> with beam.Pipeline() as pipeline:
    ...     converted, failures = (
    ...         pipeline
    ...         | beam.Create([VideoEntry("shoot/v1.mp4", "shoot", "train")])
    ...         | ConvertVideos("/data", ["dribble", "shoot"], options, tempfile.mkdtemp())
    ...     )
    ...     _ = failures | beam.Map(lambda f: print(f["path"], f["error"], f["reason"]))
    shoot/v1.mp4 VideoDecodeError file not found: /data/shoot/v1.mp4
    """

    def __init__(
        self,
        input_dir: str,
        class_names: list[str],
        options: video_conversion.ConvertOptions,
        staging_dir: str,
        frame_rate: float | None = None,
        encode_fn=None,
    ):
        super().__init__()
        self.input_dir = input_dir
        self.class_names = list(class_names)
        self.options = options
        self.staging_dir = staging_dir
        self.frame_rate = frame_rate
        self.encode_fn = encode_fn or video_io.encode_video

    def expand(self, entries):
        class_index = {name: i for i, name in enumerate(self.class_names)}
        convert = _ConvertVideoDoFn(
            self.encode_fn,
            self.input_dir,
            class_index,
            self.options,
            self.frame_rate,
            self.staging_dir,
        )
        results = entries | "Distribute" >> beam.Reshuffle() | "Convert" >> beam.ParDo(convert)
        converted = results | "Converted" >> beam.FlatMap(_tagged, CONVERTED)
        failures = results | "Failures" >> beam.FlatMap(_tagged, FAILED)
        return converted, failures
