"""Top-5 labels of video files from an exported model, the way evaluation scores a test video.

    python -m stfusion_tf.predict video.mp4 other.avi --model=serving/stfusion/1 [--json]

Each video is decoded as the conversion decodes it, cut into ``--num_clips`` evenly spaced clips
as the evaluation cuts a test video, run through the export's ``serve_frames`` signature, and
its clips' softmax probabilities are averaged (``stfusion_tf.predict`` says why each step is the
code another stage already runs). ``--num_clips`` defaults to 10, the paper's test protocol and
``train``'s ``--test_num_clips``. A video shorter than one clip is predicted with a warning; a
video that cannot be read is reported on stderr and the others are still predicted. Exit status:
1 when any video failed, 2 for a usage error.
"""

from __future__ import annotations

from absl import flags

from tfrecords_tools import command_line


def define_flags() -> None:
    flags.DEFINE_string("model", None, "An export's version folder: <serving_root>/<name>/<v>.")
    flags.DEFINE_integer(
        "num_clips", 10, "Evenly spaced clips per video (protocol clips=Nx1crop; 10: the paper's)."
    )
    flags.DEFINE_integer("batch_size", 8, "Clips per call of the model (bounds memory).")
    flags.DEFINE_integer("top_k", 5, "Labels printed per video.")
    flags.DEFINE_bool("json", False, "One JSON line per video instead of a table.")
    flags.mark_flag_as_required("model")


def main(argv):
    from stfusion_tf import predict  # TensorFlow: only once the flags are checked

    f = flags.FLAGS
    return predict.run(
        argv[1:],
        f.model,
        num_clips=f.num_clips,
        batch_size=f.batch_size,
        k=f.top_k,
        as_json=f.json,
    )


def cli() -> None:
    """The command line: ``python -m stfusion_tf.predict`` and the ``stfusion-predict`` script."""
    define_flags()
    command_line.run(main, takes_arguments=True, imports=("tensorflow",))
