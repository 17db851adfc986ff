"""The model card of a TF Serving export (``model_card.json``): what a person, a registry or a
client (``stfusion_tf.serving_client``) needs to know about the served model -- its strategy,
clip shape, classes, cost (MACs, parameters, the saving over the template), preprocessing spec and
signatures -- and the test metrics of the run that trained it (``results_card``).
"""

from __future__ import annotations

import datetime

import keras
import tensorflow as tf

from stfusion_tf import signatures as api
from stfusion_tf.models import template
from stfusion_tf.network_costs import fusion_network_costs, network_costs
from stfusion_tf.preprocessing import PreprocessingSpec

MODEL_CARD_VERSION = 1


def _signature_card(spec: PreprocessingSpec, k: int) -> dict:
    T, crop = spec.num_frames, spec.eval_crop
    outputs = {
        api.PROBABILITIES: "float32 [batch, classes]",
        api.LOGITS: "float32 [batch, classes]",
        api.TOP_K_CLASSES: f"int32 [batch, {k}]",
        api.TOP_K_LABELS: f"string [batch, {k}]",
    }
    return {
        api.SERVING_DEFAULT: {
            "inputs": {api.CLIPS_INPUT: f"float32 [batch, {T}, {crop}, {crop}, 3] RGB 0..255"},
            "outputs": outputs,
        },
        api.SERVE_FRAMES: {
            "inputs": {
                api.FRAMES_INPUT: f"string [batch, {T}] JPEG or PNG frames of one size per clip, "
                "each at most max_frame_pixels"
            },
            "outputs": outputs,
        },
    }


def _cost_card(model, spec: PreprocessingSpec) -> dict:
    """The model card's ``cost``: MACs / params at one eval clip, and the template's MACs when
    ``model`` is a pruned ``FusionNetwork`` (the saving its strategy buys)."""
    totals = network_costs(model, spec.eval_clip_shape)
    cost = {
        "clip_shape": list(spec.eval_clip_shape),
        "macs": totals.macs,
        "flops": totals.flops,
        "params": totals.params,
        "non_trainable_params": totals.non_trainable_params,
    }
    config = getattr(model, "config", None)
    # Only a network pruned from a template has a template to compare with (not a backbone).
    if getattr(model, "strategy", None) is not None and isinstance(config, template.TemplateConfig):
        template_macs = fusion_network_costs(config, None, spec.eval_clip_shape).macs
        cost["template_macs"] = template_macs
        cost["macs_saving"] = 1.0 - totals.macs / template_macs if template_macs else 0.0
    return cost


def build_model_card(
    model, spec: PreprocessingSpec, class_names: list[str], k: int, extra: dict | None
) -> dict:
    """The model card: what a person (or a registry) needs to know about an export."""
    strategy = getattr(model, "strategy", None)
    config = getattr(model, "config", None)
    card = {
        "model_card_version": MODEL_CARD_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "strategy": None if strategy is None else str(strategy),
        "network": {
            "class": type(model).__name__,
            "config": config.to_dict() if hasattr(config, "to_dict") else None,
            "strategy": None if strategy is None else str(strategy),
        },
        "clip_shape": list(spec.eval_clip_shape),
        "num_classes": len(class_names),
        "classes": list(class_names),
        "cost": _cost_card(model, spec),
        "preprocessing": spec.to_dict(),
        "signatures": _signature_card(spec, k),
        "top_k": k,
        "libraries": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    for key, value in (extra or {}).items():
        if key in card or key in ("model_name", "version"):
            raise ValueError(
                f"`model_card` key {key!r} is written by the export itself; pass what it does "
                f"not know (metrics, fingerprint, training_data, ...). Received: {key}={value!r}"
            )
        card[key] = value
    return card


def results_card(results: dict, strategy: str, labels: list[str]) -> dict:
    """Model-card entries from a ``results.json`` of ``stfusion_tf.train``: the test metrics of
    the fine-tuned network of ``strategy`` (each named with its protocol), and the run's
    fingerprint. Refuses results of another label vocabulary (they describe another model)."""
    if results.get("labels") is not None and list(results["labels"]) != list(labels):
        raise ValueError(
            "The results file was computed with another label vocabulary than the checkpoint's: "
            "pass the results.json of the same run (--results)."
        )
    card = {"evaluation": {k: results.get(k) for k in ("split", "protocol") if k in results}}
    for name, entry in (results.get("models") or {}).items():
        if entry.get("strategy") == strategy and "fine-tuned" in str(entry.get("weights", "")):
            card["metrics"] = dict(entry.get("metrics", {}))
            card["evaluation"]["entry"] = name
            break
    else:
        raise ValueError(
            f"The results file holds no fine-tuned network of strategy {strategy!r}: pass the "
            "results.json of the run that fine-tuned this checkpoint, or leave --results out."
        )
    return card
