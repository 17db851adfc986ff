"""``make demo``: the whole flow on a small synthetic dataset, on a laptop CPU, in minutes.

    python -m pipelines.demo --workdir=/tmp/stfusion_demo

1. writes real H.264 videos of the synthetic ``mixed`` task (``pipelines.synthetic``), a train
   and a test folder with different seeds, into ``<workdir>/videos``;
2. converts them with the Beam job (``pipelines.make_tfrecords``'s library call, two local worker
   processes) into ``<workdir>/workspace/examples``, carving a holdout split from train;
3. validates every record (``tfrecords_tools.inspect``), prints its table, and draws a contact
   sheet for a person to look at.
"""

import logging
import os

from absl import app, flags

from pipelines import convert, synthetic
from tfrecords_tools import contact_sheet, inspect

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/stfusion_demo", "Where the demo writes.")
_TASK = flags.DEFINE_enum(
    "task", "mixed", synthetic.TASKS, "Synthetic task (see pipelines/synthetic.py)."
)
_VIDEOS = flags.DEFINE_integer("videos_per_class", 16, "Training videos per class.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Beam DirectRunner worker processes.")


def make_videos(root: str, task: str, videos_per_class: int) -> None:
    """Train and test folders (the ``folder`` layout with split sub-folders), unseen test seeds."""
    base = synthetic.SyntheticSpec(task=task, frames=32, height=64, width=80)
    for split, count, seed in (
        ("train", videos_per_class, 0),
        ("test", max(2, videos_per_class // 4), 1),
    ):
        spec = synthetic.SyntheticSpec(**{**base.__dict__, "videos_per_class": count, "seed": seed})
        synthetic.write_dataset(os.path.join(root, split), spec)


def main(argv):
    del argv
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # the local workers' start-up chatter
    workdir = _WORKDIR.value
    videos = os.path.join(workdir, "videos")
    examples = os.path.join(workdir, "workspace", "examples")
    print(f"[1/3] Writing synthetic videos ({_TASK.value}) to {videos}")
    make_videos(videos, _TASK.value, _VIDEOS.value)
    print(
        f"[2/3] Converting them to TFRecords with Beam ({_WORKERS.value} workers) into {examples}"
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
    print("[3/3] Validating every record and drawing a contact sheet")
    report = inspect.inspect_records([examples], validate=True)
    print(inspect.format_table(report))
    if not report["ok"]:
        raise SystemExit(f"demo: invalid record: {report['error']}")
    sheet = os.path.join(workdir, "contact_sheet.png")
    contact_sheet.write_contact_sheet([os.path.join(examples, "train-*.tfrecord")], sheet)
    print(f"Records: {examples}\nContact sheet: {sheet}")


if __name__ == "__main__":
    app.run(main)
