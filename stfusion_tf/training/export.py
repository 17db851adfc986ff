"""The ``export`` phase: the fine-tuned network as a SavedModel for TF Serving."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from stfusion_tf import export
from stfusion_tf.report import RESULTS_FILE
from stfusion_tf.training.config import PhaseSettings
from stfusion_tf.training.loop import seed_phase
from stfusion_tf.training.workspace import mark_done, skip_if_done

SERVING_DIR = "serving"


def run_export(ctx, model_name: str, version: int | None = None, top_k: int = 5):
    """Exports the fine-tuned network for TF Serving -> ``<workspace>/serving/<model_name>/``.

    The SavedModel of ``stfusion_tf.export`` (preprocessing from this run's spec, labels baked
    in), with a model card holding ``results.json`` and the dataset fingerprint. A finished
    export (``train/export/DONE``) is not redone; remove that marker to export a new version.
    """
    if skip_if_done(ctx, "export"):
        return None
    seed_phase(ctx, "export")
    model = ctx.network.load_finetuned(ctx)
    results_path = os.path.join(ctx.workspace, RESULTS_FILE)
    card = {
        "fingerprint": ctx.fingerprint,
        "checkpoint": tf.train.latest_checkpoint(
            os.path.join(ctx.phase_dir("finetune"), "checkpoints")
        ),
        "backbone": ctx.network.to_dict(),
    }
    if tf.io.gfile.exists(results_path):
        with tf.io.gfile.GFile(results_path) as f:
            card["results"] = json.load(f)
    if not ctx.is_chief:
        return None
    path = export.export_saved_model(
        model,
        ctx.spec,
        list(ctx.labels),
        os.path.join(ctx.workspace, SERVING_DIR),
        model_name,
        version=version,
        model_card=card,
        top_k=top_k,
    )
    ctx.log(f"[export] {path}")
    summary = {"path": path, "strategy": str(model.strategy)}
    mark_done(ctx, ctx.phase_dir("export"), summary)
    return summary


def run(ctx, settings: PhaseSettings):
    """The phase table's entry: ``run_export`` with the export's settings."""
    return run_export(ctx, settings.model_name, version=settings.export_version)
