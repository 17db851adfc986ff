"""``make demo``: the method, shown to work, on a synthetic dataset, on a laptop CPU in minutes.

    python -m pipelines.demo --workdir=/tmp/stfusion_demo

1. writes real H.264 videos of the synthetic ``motion`` task (``pipelines.synthetic``: four
   classes that differ only in the direction an object moves, so a single frame says nothing
   and the network must fuse time), a train and a test folder with different seeds, into
   ``<workdir>/videos``;
2. converts them with the Beam job (``pipelines.make_tfrecords``'s library call, two local
   workers, each decoding in a helper process) into ``<workdir>/workspace/examples``, carving a
   holdout split (the set strategies are ranked on, 32 videos) from train;
3. validates every record (``tfrecords_tools.inspect``), prints its table, and draws a contact
   sheet for a person to look at;
4. runs every training phase with ``configs/demo_cpu.cfg`` (warm-up, v-DropPath search, sampling
   strategies on the holdout split, fine-tuning the best AND the S, ST, S+ST all-the-way
   strategies alike, evaluation on the test split, export for TF Serving); the training entry
   point ends with the table of test top-1 and MACs against chance and the artifacts' paths;
5. predicts a test video of two classes (and a broken file, which is reported, not fatal to the
   others) with the exported SavedModel (``stfusion_tf.predict``), as a user would.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

from absl import flags

from pipelines import synthetic
from tfrecords_tools import command_line

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/stfusion_demo", "Where the demo writes.")
_TASK = flags.DEFINE_enum(
    "task", "motion", synthetic.TASKS, "Synthetic task (see pipelines/synthetic.py)."
)
# 40 a class: a fifth (32 videos) is the holdout the strategies are ranked on, so one video
# moves a score by 3 points, not 8.
_VIDEOS = flags.DEFINE_integer("videos_per_class", 40, "Training videos per class.")
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Beam DirectRunner workers (threads, each decoding in its own process)."
)
_TRAIN = flags.DEFINE_bool("train", True, "Also run the training phases (configs/demo_cpu.cfg).")


def training_config(name: str = "demo_cpu.cfg") -> str:
    """The path of a training flagfile of ``configs/``, shipped inside the ``stfusion_tf`` package
    (``stfusion_tf/configs``, a link to ``configs/`` in the repository), so an installed copy
    finds it from any folder. The package is located, not imported: the demo runs its commands
    as subprocesses."""
    spec = importlib.util.find_spec("stfusion_tf")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("demo: the stfusion_tf package is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "configs", name)


def make_videos(root: str, task: str, videos_per_class: int) -> None:
    """Train and test folders (the ``folder`` layout with split sub-folders), unseen test seeds.

    Square frames: the test's centre crop then holds the whole frame. On 64x80 frames it cut off
    the sides, where an object moving on the torus spends whole clips (one test video in 40
    showed no object at all and was wrong for every network, capping all of them at 0.975).
    """
    base = synthetic.SyntheticSpec(task=task, frames=32, height=64, width=64)
    for split, count, seed in (
        ("train", videos_per_class, 0),
        ("test", max(2, videos_per_class // 4), 1),
    ):
        spec = synthetic.SyntheticSpec(**{**base.__dict__, "videos_per_class": count, "seed": seed})
        synthetic.write_dataset(os.path.join(root, split), spec)


_MARKER = ".stfusion_demo"


def fresh_workdir(workdir: str) -> None:
    """Starts each demo from an empty folder: an earlier demo's (marked) folder is replaced, any
    other non-empty folder is refused rather than deleted."""
    if os.path.isdir(workdir) and os.listdir(workdir):
        if not os.path.exists(os.path.join(workdir, _MARKER)):
            raise SystemExit(
                f"demo: {workdir} is not empty and not an earlier demo: pass DEMO_DIR=..."
            )
        shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    open(os.path.join(workdir, _MARKER), "w").close()


def main(argv):
    del argv
    # Beam and TensorFlow: imported (quietly, by command_line.run) once the flags are checked.
    from pipelines import convert, pipeline_args
    from tfrecords_tools import contact_sheet, inspect

    workdir = _WORKDIR.value
    videos = os.path.join(workdir, "videos")
    fresh_workdir(workdir)
    examples = os.path.join(workdir, "workspace", "examples")
    print(f"[1/5] Writing synthetic videos ({_TASK.value}) to {videos}")
    make_videos(videos, _TASK.value, _VIDEOS.value)
    print(
        f"[2/5] Converting them to TFRecords with Beam ({_WORKERS.value} workers) into {examples}"
    )
    manifests = convert.run_conversion(
        "folder",
        videos,
        examples,
        holdout_fraction=0.2,
        options=convert.ConvertOptions(short_side=64),
        pipeline_args=pipeline_args.with_quiet_workers(
            ["--direct_running_mode=multi_processing", f"--direct_num_workers={_WORKERS.value}"],
            verbose=command_line.verbosity_given(),
        ),
    )
    print(convert.summary_line(manifests))
    print("[3/5] Validating every record and drawing a contact sheet")
    report = inspect.inspect_records([examples], validate=True)
    print(inspect.format_table(report))
    if not report["ok"]:
        raise SystemExit(f"demo: invalid record: {report['error']}")
    sheet = os.path.join(workdir, "contact_sheet.png")
    contact_sheet.write_contact_sheet([os.path.join(examples, "train-*.tfrecord")], sheet)
    print(f"Records: {examples}\nContact sheet: {sheet}")
    if not _TRAIN.value:
        return
    workspace = os.path.join(workdir, "workspace")
    config = training_config()
    print(f"[4/5] Training, searching, evaluating and exporting ({config}) in {workspace}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stfusion_tf.train",
            f"--flagfile={config}",
            f"--workspace={workspace}",
        ],
        check=True,
    )
    with open(os.path.join(workspace, "train", "export", "DONE")) as f:
        export_dir = json.load(f)["path"]
    test_dir = os.path.join(videos, "test")
    classes = sorted(os.listdir(test_dir))
    samples = [
        os.path.join(test_dir, name, sorted(os.listdir(os.path.join(test_dir, name)))[0])
        for name in (classes[0], classes[-1])
    ]
    broken = os.path.join(workdir, "broken.mp4")
    with open(broken, "wb") as f:
        f.write(b"not a video")
    print(
        f"[5/5] Predicting a test video of {classes[0]!r} and of {classes[-1]!r}, and a broken file"
    )
    result = subprocess.run(
        [sys.executable, "-m", "stfusion_tf.predict", *samples, broken, f"--model={export_dir}"]
    )
    if result.returncode != 1:  # 1: the broken file, reported; the others predicted
        raise SystemExit(f"demo: predict exited {result.returncode}, expected 1 (the broken file)")


def cli() -> None:
    """The command line: ``python -m pipelines.demo`` and the ``stfusion-demo`` script."""
    command_line.run(main, imports=("apache_beam", "tensorflow"))


if __name__ == "__main__":
    cli()
