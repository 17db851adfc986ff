"""Converted records of the tiny synthetic dataset and the tiny template's training flags, for the
tests that run the training entry point end to end (imports Beam: keep it out of light tests)."""

from __future__ import annotations

import os
import shutil

from pipelines import convert, synthetic
from tests import video_fixtures

# A template whose CPU step takes ~0.05 s, and enough search steps for the gates to move.
TINY_TEMPLATE_FLAGS = (
    "--blocks=1,1",
    "--growth_rate=4",
    "--bottleneck_factor=2",
    "--stem_filters=4",
    "--num_frames=4",
    "--stride=2",
    "--crop_size=24",
    "--train_short_sides=28,32",
    "--eval_short_side=24",
    "--noflip",
    "--batch_size=4",
    "--warmup_epochs=1",
    "--search_epochs=2",
    "--learning_rate=0.05",
    "--lr_decay_epochs=",
    "--length_scale=0.05",
    "--logit_lr_multiplier=20",
    "--cache_holdout",
    "--eval_batch_size=8",
    "--shuffle_buffer=16",
    "--distribution=one_device",
    "--jit_compile=false",
    "--noverbose",
)


def convert_tiny_dataset(
    root: str,
    task: str = "motion",
    videos_per_class: int = 4,
    test_videos_per_class: int = 1,
    num_shards: int = 1,
) -> str:
    """Writes ``task``'s tiny videos under ``root/videos`` (a ``train`` folder, and a ``test`` one
    from another seed if ``test_videos_per_class``), converts them with a quarter of train carved
    into ``holdout``, and returns the records folder ``root/<task>/examples``."""
    videos = os.path.join(root, "videos")
    spec = video_fixtures.tiny_spec(task=task, videos_per_class=videos_per_class)
    synthetic.write_dataset(os.path.join(videos, "train"), spec)
    if test_videos_per_class:
        test_spec = video_fixtures.tiny_spec(
            task=task, videos_per_class=test_videos_per_class, seed=1
        )
        synthetic.write_dataset(os.path.join(videos, "test"), test_spec)
    output = os.path.join(root, task, "examples")
    convert.run_conversion(
        "folder",
        videos,
        output,
        holdout_fraction=0.25,
        num_shards=num_shards,
        options=convert.ConvertOptions(short_side=32, isolate_decoder=False),
    )
    return output


def copy_finished_warmup(workspace: str, other: str) -> None:
    """``other`` becomes a workspace whose warm-up is done, the same as ``workspace``'s: the
    run's settings, its verified-records list and the finished ``train/warmup``. A test of the
    search phase starts from it instead of training a warm-up of its own."""
    os.makedirs(os.path.join(other, "train"))
    for name in ("run_config.json", "verified_records.json"):
        path = os.path.join(workspace, "train", name)
        if os.path.exists(path):
            shutil.copy(path, os.path.join(other, "train", name))
    shutil.copytree(
        os.path.join(workspace, "train", "warmup"), os.path.join(other, "train", "warmup")
    )
