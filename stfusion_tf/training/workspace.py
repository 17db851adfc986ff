"""The run's folder (``WORKSPACE.md``): its settings file, the phases' done markers, JSONL logs.

``train/run_config.json`` holds what shapes the weights and the clips (a restart must match it);
``train/<phase>/DONE`` marks a finished phase with its summary (written last, atomically, by the
chief only); ``train/<phase>/logs/*.jsonl`` hold one JSON line per epoch, cut back to the last
checkpointed epoch when a killed phase is resumed so no epoch is logged twice. All through
``tfrecords_tools.files`` and ``tf.io.gfile``: a workspace may be a ``gs://`` folder.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfrecords_tools import files

RUN_CONFIG = "run_config.json"
DONE = "DONE"
# TemplateConfig fields that change the network's weights (a checkpoint fits only the same ones).
ARCHITECTURE_FIELDS = (
    "num_classes",
    "blocks",
    "growth_rate",
    "bottleneck_factor",
    "stem_filters",
    "layer_gate",
    "input_frames",
    "input_size",
)


def write_run_config(ctx, extra: dict) -> None:
    """Stores the run's settings in ``train/run_config.json``; a restart must match them.

    What shapes the weights (the template's architecture fields, ``ARCHITECTURE_FIELDS``) and
    what the network is fed (the clip spec) must not change between a run and its restart: a
    mismatch raises and names the fields, instead of restoring checkpoints into a different
    network. Everything else may change: epochs, learning rates, lambda, tau and p0 of a new
    search from the same warm-up, synchronized batch norm on another number of GPUs.
    """
    path = os.path.join(ctx.workspace, "train", RUN_CONFIG)
    current = {
        "template_config": ctx.template_config.to_dict(),
        "preprocessing": ctx.spec.to_dict(),
        **extra,
    }
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            stored = json.load(f)
        fixed = {"template_config": ARCHITECTURE_FIELDS, "preprocessing": None}
        diffs = [
            f"{key}.{field}: {stored[key].get(field)!r} -> {current[key].get(field)!r}"
            for key, fields in fixed.items()
            for field in sorted(fields or set(stored.get(key, {})) | set(current[key]))
            if stored.get(key, {}).get(field) != current[key].get(field)
        ]
        if stored.get("backbone") != current.get("backbone"):
            diffs.append(f"backbone: {stored.get('backbone')!r} -> {current.get('backbone')!r}")
        if diffs:
            raise ValueError(
                f"The workspace {ctx.workspace!r} holds a run with other settings ({'; '.join(diffs)}). "
                "Restart with the same flags, or use a new --workspace."
            )
    if ctx.is_chief:
        files.write_json_atomically(path, current)


def is_done(phase_dir: str) -> bool:
    return tf.io.gfile.exists(os.path.join(phase_dir, DONE))


def mark_done(ctx, phase_dir: str, summary: dict) -> None:
    """Writes the ``DONE`` marker (atomically, chief only) with the phase's summary."""
    if ctx.is_chief:
        files.write_json_atomically(os.path.join(phase_dir, DONE), summary)


def skip_if_done(ctx, phase: str) -> bool:
    """True (and says so) when ``phase`` has its ``DONE`` marker."""
    if is_done(ctx.phase_dir(phase)):
        ctx.log(f"[{phase}] already done ({os.path.join(ctx.phase_dir(phase), DONE)}): skipped.")
        return True
    return False


def truncate_jsonl(ctx, path: str, epochs_kept: int) -> None:
    """Drops lines of epochs after ``epochs_kept`` (written before a kill, then redone), and
    lines cut by a kill (chief only)."""
    if ctx.is_chief:
        files.truncate_jsonl(
            path,
            lambda record: isinstance(record.get("epoch"), int) and record["epoch"] <= epochs_kept,
        )


def append_jsonl(ctx, path: str, record: dict) -> None:
    """Appends ``record`` as one line (chief only)."""
    if ctx.is_chief:
        files.append_jsonl(path, record)
