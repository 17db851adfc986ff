"""Writes the synthetic dataset of real video files (``folder`` layout).

python -m pipelines.make_synthetic --output_dir=/tmp/synthetic --task=motion
"""

from absl import flags

from pipelines import synthetic
from tfrecords_tools import command_line

_DEFAULT = synthetic.SyntheticSpec()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write <class>/<video>.mp4.")
_TASK = flags.DEFINE_enum("task", _DEFAULT.task, synthetic.TASKS, "What separates the classes.")
_VIDEOS = flags.DEFINE_integer("videos_per_class", _DEFAULT.videos_per_class, "Videos per class.")
_FRAMES = flags.DEFINE_integer("frames", _DEFAULT.frames, "Frames per video.")
_HEIGHT = flags.DEFINE_integer("height", _DEFAULT.height, "Frame height (even).")
_WIDTH = flags.DEFINE_integer("width", _DEFAULT.width, "Frame width (even).")
_FPS = flags.DEFINE_integer("fps", _DEFAULT.fps, "Frame rate of the written videos.")
_CODEC = flags.DEFINE_enum(
    "codec", _DEFAULT.codec, ["libx264", "mpeg4", "libvpx-vp9"], "Video codec (PyAV/FFmpeg)."
)
_SEED = flags.DEFINE_integer("seed", _DEFAULT.seed, "Random seed: same seed, same videos.")
flags.mark_flag_as_required("output_dir")


def main(argv):
    del argv
    spec = synthetic.SyntheticSpec(
        task=_TASK.value,
        videos_per_class=_VIDEOS.value,
        frames=_FRAMES.value,
        height=_HEIGHT.value,
        width=_WIDTH.value,
        fps=_FPS.value,
        codec=_CODEC.value,
        seed=_SEED.value,
    )
    counts = synthetic.write_dataset(_OUTPUT_DIR.value, spec)
    print(
        f"Wrote {sum(counts.values())} videos ({len(counts)} classes, task={spec.task}) "
        f"to {_OUTPUT_DIR.value}"
    )


def cli() -> None:
    """The command line: ``python -m pipelines.make_synthetic`` and the ``stfusion-make-synthetic`` script."""
    command_line.run(main)


if __name__ == "__main__":
    cli()
