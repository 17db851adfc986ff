"""Top-5 labels of video files from an exported model, the way evaluation scores a test video.

    python -m stfusion_tf.predict video.mp4 other.avi --model=serving/ucf101/1 [--json]

Why it needs nothing but the export: the SavedModel carries its ``PreprocessingSpec`` and class
names (``stfusion_tf.export``), and each step below is the code another stage already runs:

1. decode: ``tfrecords_tools.video_io.encode_video`` with the spec's conversion part
   (``DecodeOptions(short_side=spec.frame_short_side, fps=spec.fps)``, ``spec.jpeg_quality``):
   the same PyAV decode, resize and JPEG encode as ``make_tfrecords``, so the frames are the bytes
   the conversion would have stored for this video;
2. sample: ``preprocessing.sample_eval_indices``: ``--num_clips`` evenly spaced clips, as
   ``data.eval_dataset`` picks them (protocol ``clips=<num_clips>x1crop``);
3. run: the export's ``serve_frames`` signature (decode, resize to the eval short side, centre
   crop, normalise: ``preprocessing.eval_views`` inside the SavedModel) in micro-batches of
   ``--batch_size`` clips, so memory stays bounded on long videos;
4. average: softmax of each clip's logits, averaged per video (``evaluation.softmax``, the
   paper's video-level protocol as ``evaluation.evaluate`` computes it).

``--num_clips`` defaults to 10, the paper's test protocol and ``train``'s ``--test_num_clips``;
pass the number the reported metric names (``video_top1@clips=10x1crop``) to reproduce it. A
video that cannot be read is reported on stderr (with the reason) and the others are still
predicted; the exit code is 1 when any video failed, 2 for a usage error. A video shorter than
one clip (``spec.span`` frames: ``num_frames`` at ``stride``) is still predicted, from clips that
repeat its frames as evaluation pads them, with a one-line warning on stderr.

The command's flags and ``main`` are ``stfusion_tf.predict_command`` (nothing heavy imported:
``--help`` and a usage error come before TensorFlow loads); this module is what it runs.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("stfusion_tf.predict_command")

import dataclasses
import json
import sys

import numpy as np

from stfusion_tf import checks, evaluation, export, preprocessing
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.signatures import LOGITS
from tfrecords_tools import video_io

DEFAULT_NUM_CLIPS = 10


class UnreadableVideoError(Exception):
    """A video file could not be turned into clips; ``str(error)`` is the reason."""


def decode_options(spec: PreprocessingSpec) -> tuple[video_io.DecodeOptions, int]:
    """The conversion's decode options and JPEG quality, from the spec's conversion part."""
    if spec.jpeg_quality is None:
        raise ValueError(
            "The model's preprocessing spec does not say how frames were extracted "
            "(jpeg_quality is None): export it with the spec of its records "
            '(spec.with_conversion(manifest["options"])), as training does.'
        )
    options = video_io.DecodeOptions(short_side=spec.frame_short_side or 0, fps=spec.fps)
    return options, spec.jpeg_quality


def video_frames(path: str, spec: PreprocessingSpec) -> list[bytes]:
    """Every frame of ``path`` as the JPEG bytes the conversion would store for it.

    Raises:
      UnreadableVideoError: the file is missing, empty, not a video, or has no decodable frame.
    """
    options, quality = decode_options(spec)
    try:
        return video_io.encode_video(path, options, quality).jpegs
    except video_io.VideoDecodeError as e:
        raise UnreadableVideoError(str(e)) from e


def clip_frames(jpegs: list[bytes], spec: PreprocessingSpec, num_clips: int) -> np.ndarray:
    """``[num_clips, T]`` JPEG bytes: the evaluation's evenly spaced clips of a video."""
    indices = preprocessing.sample_eval_indices(len(jpegs), spec, num_clips).numpy()
    return np.asarray(jpegs, dtype=object)[indices]


def video_clips(path: str, spec: PreprocessingSpec, num_clips: int) -> np.ndarray:
    """``[num_clips, T]`` JPEG bytes of a video file, ready for ``serve_frames``."""
    return clip_frames(video_frames(path, spec), spec, num_clips)


@dataclasses.dataclass
class VideoPrediction:
    """The scores of one video.

    Attributes:
      video: the file.
      protocol: the evaluation protocol (``clips=10x1crop``).
      clip_logits: ``[num_clips, classes]`` logits of each clip.
      probabilities: ``[classes]`` the mean of the clips' softmax probabilities.
      top_k: ``[(label, probability)]``, most probable first.
      frames: frames decoded from the video (None: not known, e.g. clips a client sent).
    """

    video: str
    protocol: str
    clip_logits: np.ndarray
    probabilities: np.ndarray
    top_k: list[tuple[str, float]]
    frames: int | None = None

    def to_dict(self) -> dict:
        return {
            "video": self.video,
            "protocol": self.protocol,
            "top_k": [{"label": label, "probability": p} for label, p in self.top_k],
        }


def video_result(
    video: str, clip_logits, class_names: list[str], num_clips: int, k: int = 5
) -> VideoPrediction:
    """Averages the clips' softmax probabilities (the video-level protocol) into a prediction."""
    clip_logits = np.asarray(clip_logits, dtype=np.float64)
    probabilities = evaluation.softmax(clip_logits).mean(axis=0)
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(class_names))]
    return VideoPrediction(
        video=video,
        protocol=evaluation.protocol_name(num_clips, 1),
        clip_logits=clip_logits,
        probabilities=probabilities,
        top_k=[(class_names[i], float(probabilities[i])) for i in order],
    )


def predict_video(
    served, path: str, num_clips: int = DEFAULT_NUM_CLIPS, batch_size: int = 8, k: int = 5
) -> VideoPrediction:
    """Scores one video file with a loaded export (``export.load``).

    Raises:
      UnreadableVideoError: the video cannot be decoded.
    """
    checks.positive_int(batch_size, "batch_size")
    jpegs = video_frames(path, served.spec)
    clips = clip_frames(jpegs, served.spec, num_clips)
    logits = [
        served.serve_frames(clips[start : start + batch_size])[LOGITS]
        for start in range(0, len(clips), batch_size)
    ]
    result = video_result(path, np.concatenate(logits), served.class_names, num_clips, k)
    return dataclasses.replace(result, frames=len(jpegs))


def short_video_warning(prediction: VideoPrediction, spec: PreprocessingSpec) -> str | None:
    """One line when the video is shorter than one clip (its clips repeat frames), else None."""
    if prediction.frames is None or prediction.frames >= spec.span:
        return None
    return (
        f"predict: warning: {prediction.video} has {prediction.frames} frames, fewer than one "
        f"clip spans ({spec.num_frames} frames at stride {spec.stride}: {spec.span}): its clips "
        "repeat frames, the prediction is less reliable"
    )


def format_prediction(prediction: VideoPrediction) -> str:
    lines = [f"{prediction.video} ({prediction.protocol})"]
    width = max(len(label) for label, _ in prediction.top_k)
    for rank, (label, p) in enumerate(prediction.top_k, start=1):
        lines.append(f"  {rank}. {label:<{width}}  {p:.4f}")
    return "\n".join(lines)


def predict_files(
    served,
    videos: list[str],
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    batch_size: int = 8,
    k: int = 5,
    as_json: bool = False,
    out=None,
    err=None,
) -> int:
    """Predicts every video, printing as it goes; returns 1 if any failed, else 0. ``out`` and
    ``err`` default to ``sys.stdout`` and ``sys.stderr`` as they are at the call (a redirect
    made after this module was imported applies)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    failed = 0
    for path in videos:
        try:
            prediction = predict_video(served, path, num_clips, batch_size, k)
        except UnreadableVideoError as e:
            print(f"predict: cannot read {path}: {e}", file=err)
            failed += 1
            continue
        warning = short_video_warning(prediction, served.spec)
        if warning:
            print(warning, file=err)
        print(
            json.dumps(prediction.to_dict()) if as_json else format_prediction(prediction), file=out
        )
        out.flush()
    if failed:
        print(f"predict: {failed} of {len(videos)} videos could not be read.", file=err)
    return 1 if failed else 0


def run(
    videos: list[str],
    model: str,
    *,
    num_clips: int = DEFAULT_NUM_CLIPS,
    batch_size: int = 8,
    k: int = 5,
    as_json: bool = False,
    out=None,
    err=None,
) -> int:
    """The command: loads the export and predicts ``videos``; returns the exit code (0, 1 if a
    video could not be read, 2 for a usage error, reported without a traceback). ``out`` and
    ``err`` as for ``predict_files``."""
    err = sys.stderr if err is None else err
    if not videos:
        print("usage: python -m stfusion_tf.predict VIDEO... --model=<export dir>", file=err)
        return 2
    try:
        served = export.load(model)
        decode_options(served.spec)
        checks.positive_int(num_clips, "num_clips")
        checks.positive_int(batch_size, "batch_size")
    except (FileNotFoundError, ValueError) as e:
        print(f"predict: {e}", file=err)
        return 2
    return predict_files(
        served,
        videos,
        num_clips=num_clips,
        batch_size=batch_size,
        k=k,
        as_json=as_json,
        out=out,
        err=err,
    )
