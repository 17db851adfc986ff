"""``make demo``: the whole flow on a small synthetic dataset, on a laptop CPU, in minutes.

    python -m pipelines.demo --workdir=/tmp/stfusion_demo

1. writes real H.264 videos of the synthetic ``mixed`` task (``pipelines.synthetic``), a train
   and a test folder with different seeds, into ``<workdir>/videos``;
2. converts them with the Beam job (``pipelines.make_tfrecords``'s library call, two local
   workers, each decoding in a helper process) into ``<workdir>/workspace/examples``, carving a holdout split from train;
3. validates every record (``tfrecords_tools.inspect``), prints its table, and draws a contact
   sheet for a person to look at;
4. runs every training phase with ``configs/demo_cpu.cfg`` (warm-up, v-DropPath search, sampling
   strategies on the holdout split, fine-tuning the best, evaluation on the test split, export
   for TF Serving) and says where the marginal-probability chart, the best strategy, the results
   and the SavedModel are;
5. predicts two test videos (and a broken file, which is reported, not fatal to the others) with
   the exported SavedModel (``stfusion_tf.predict``), as a user would.
"""

import json
import logging
import os
import shutil
import subprocess
import sys

from absl import app, flags

from pipelines import convert, synthetic
from tfrecords_tools import contact_sheet, inspect

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/stfusion_demo", "Where the demo writes.")
_TASK = flags.DEFINE_enum(
    "task", "mixed", synthetic.TASKS, "Synthetic task (see pipelines/synthetic.py)."
)
_VIDEOS = flags.DEFINE_integer("videos_per_class", 16, "Training videos per class.")
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Beam DirectRunner workers (threads, each decoding in its own process)."
)
_TRAIN = flags.DEFINE_bool("train", True, "Also run the training phases (configs/demo_cpu.cfg).")
_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "demo_cpu.cfg"
)


def make_videos(root: str, task: str, videos_per_class: int) -> None:
    """Train and test folders (the ``folder`` layout with split sub-folders), unseen test seeds."""
    base = synthetic.SyntheticSpec(task=task, frames=32, height=64, width=80)
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
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # the local workers' start-up chatter
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
        pipeline_args=[
            "--direct_running_mode=multi_processing",
            f"--direct_num_workers={_WORKERS.value}",
        ],
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
    print(f"[4/5] Training, searching, evaluating and exporting ({_CONFIG}) in {workspace}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "stfusion_tf.train",
            f"--flagfile={_CONFIG}",
            f"--workspace={workspace}",
        ],
        check=True,
    )
    search = os.path.join(workspace, "search")
    with open(os.path.join(workspace, "train", "export", "DONE")) as f:
        export_dir = json.load(f)["path"]
    print(
        f"Marginal probabilities chart: {search}/marginals.png\n"
        f"Best strategy: {search}/best_strategy.json (all sampled: {search}/strategies.csv)\n"
        f"Results: {workspace}/results.json\n"
        f"SavedModel for TF Serving: {export_dir} (model_card.json beside it)"
    )
    test_dir = os.path.join(videos, "test")
    some_class = sorted(os.listdir(test_dir))[0]
    samples = [
        os.path.join(test_dir, some_class, name)
        for name in sorted(os.listdir(os.path.join(test_dir, some_class)))[:2]
    ]
    broken = os.path.join(workdir, "broken.mp4")
    with open(broken, "wb") as f:
        f.write(b"not a video")
    print(f"[5/5] Predicting {len(samples)} test videos of {some_class!r} and a broken file")
    result = subprocess.run(
        [sys.executable, "-m", "stfusion_tf.predict", *samples, broken, f"--model={export_dir}"]
    )
    if result.returncode != 1:  # 1: the broken file, reported; the others predicted
        raise SystemExit(f"demo: predict exited {result.returncode}, expected 1 (the broken file)")


if __name__ == "__main__":
    app.run(main)
