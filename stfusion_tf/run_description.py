"""What a run built, or what a checkpoint holds, described from the files that say so.

``python -m stfusion_tf.describe --workspace=<run>`` and ``--checkpoint=<path>`` print it: the
network's cost part by part (``stfusion_tf.network_description``), after one line per file read
saying what it holds. For a workspace (``WORKSPACE.md``) the files are:

- ``train/run_config.json``: the template's architecture and the clip spec (required: a folder
  without it holds no run);
- ``search/best_strategy.json``: the strategy the sample phase chose, with its holdout score;
- ``train/finetune``'s checkpoint: the network that was fine-tuned (its metadata names the
  network, the strategy and the spec; ``stfusion_tf.checkpoints``), the one described; before the
  fine-tune, the best strategy pruned from the run's template; before the sample phase, the
  template;
- the export (``train/export/DONE``, ``model_card.json``): the MACs and parameters its card
  counted, compared with the description's.

Costs are counted on the run's evaluation clip (``PreprocessingSpec.eval_clip_shape``), the clip
the export serves and its model card counts on.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from stfusion_tf import checkpoints, report, scoring
from stfusion_tf.models.backbones import BackboneConfig
from stfusion_tf.models.template_config import TemplateConfig
from stfusion_tf.network_description import describe_backbone, describe_network
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.strategy import FusionStrategy
from stfusion_tf.training.workspace import RUN_CONFIG, is_done

TEMPLATE, BACKBONE = "template", "backbone"


@dataclasses.dataclass(frozen=True)
class RunNetwork:
    """A network a run built.

    Attributes:
      kind: ``template`` (the template, or a network pruned from it) or ``backbone``.
      config: its ``TemplateConfig`` or ``BackboneConfig``.
      strategy: its fusion strategy (a ``FusionStrategy`` of the template, a backbone's compact
        string), or None for the template with every branch.
      clip_shape: ``(T, crop, crop, 3)``, the run's evaluation clip.
      facts: one line per file read, saying what it holds.
      export: the run's export's model card, with its folder as ``path``; None without one.
    """

    kind: str
    config: TemplateConfig | BackboneConfig
    strategy: FusionStrategy | str | None
    clip_shape: tuple[int, int, int, int]
    facts: tuple[str, ...]
    export: dict | None = None


def of_checkpoint(path: str) -> RunNetwork:
    """The network a checkpoint (prefix, ``checkpoints/`` folder or phase folder) holds, from
    its run metadata. Raises ``FileNotFoundError`` / ``ValueError`` saying what to give."""
    metadata = checkpoints.read_metadata(path)
    network = metadata["network"]
    strategy = network.get("strategy") or None
    if network.get("kind") == BACKBONE:
        kind, config = BACKBONE, BackboneConfig.from_dict(network["config"])
        what = f"the {config.backbone} backbone, strategy {strategy}"
    else:
        kind, config = TEMPLATE, TemplateConfig.from_dict(network["config"])
        strategy = strategy and FusionStrategy.parse(strategy)
        what = f"strategy {strategy} pruned from the template" if strategy else "the template"
    spec = PreprocessingSpec.from_dict(metadata["preprocessing"])
    fact = (
        f"checkpoint {checkpoints.resolve(path)} (phase {metadata['phase']}): {what}, "
        f"{len(metadata['labels'])} classes"
    )
    return RunNetwork(kind, config, strategy, tuple(spec.eval_clip_shape), (fact,))


def _best_strategy_fact(search_dir: str) -> tuple[FusionStrategy | None, str]:
    """The sample phase's choice and the line saying so (None before the sample phase)."""
    path = os.path.join(search_dir, scoring.BEST_STRATEGY_FILE)
    if not tf.io.gfile.exists(path):
        return None, f"best strategy: none yet ({path} is written by the sample phase)"
    strategy, record = scoring.read_best_strategy(search_dir)
    scores = record.get("scores", {})
    return strategy, (
        f"best strategy: {strategy} ({path}: holdout video top-1 {scores.get('holdout_top1', 0):.3f} "
        f"at {scores.get('protocol')}, the best of {record.get('num_strategies_scored')} scored)"
    )


def _export_card(workspace: str) -> dict | None:
    """The model card of the run's export, with its folder as ``path`` (None: not exported)."""
    path = report.export_dir(workspace)
    if path is None:
        return None
    with tf.io.gfile.GFile(os.path.join(path, "model_card.json")) as f:
        return {**json.load(f), "path": path}


def of_workspace(workspace: str) -> RunNetwork:
    """The network a run built in ``workspace``: fine-tuned, or (before the fine-tune) its best
    strategy, or (before the sample phase) its template; with the export's card.

    Raises ``FileNotFoundError`` when the folder holds no run (no ``train/run_config.json``).
    """
    path = os.path.join(workspace, "train", RUN_CONFIG)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{workspace!r} holds no run: it has no train/{RUN_CONFIG} (stfusion_tf.train writes "
            "it when a run starts). Give the --workspace of a run, or leave --workspace out to "
            "describe the network of the flags."
        )
    with tf.io.gfile.GFile(path) as f:
        run_config = json.load(f)
    facts = [f"run: {path} (phases {','.join(run_config.get('phases', []))})"]
    best, best_fact = _best_strategy_fact(os.path.join(workspace, "search"))
    finetune = os.path.join(workspace, "train", "finetune")
    try:
        network = of_checkpoint(finetune)
        state = "fine-tuned" if is_done(finetune) else "being fine-tuned (phase not done)"
        facts += [best_fact, f"{state}: {network.facts[0]}"]
    except FileNotFoundError:
        if run_config.get("backbone"):
            raise FileNotFoundError(
                f"The backbone run in {workspace!r} has no fine-tune checkpoint yet: run "
                "its finetune phase, then describe it."
            ) from None
        spec = PreprocessingSpec.from_dict(run_config["preprocessing"])
        config = TemplateConfig.from_dict(run_config["template_config"])
        state = f"not fine-tuned yet ({finetune} has no checkpoint): "
        state += f"strategy {best} pruned from" if best else "no strategy chosen:"
        network = RunNetwork(TEMPLATE, config, best, tuple(spec.eval_clip_shape), ())
        facts += [best_fact, f"{state} the run's template"]
    return dataclasses.replace(network, facts=tuple(facts), export=_export_card(workspace))


def _export_line(card: dict, totals: dict, clip_shape) -> str:
    """The export's own count, and whether it is the network described above."""
    cost = card["cost"]
    same = (cost["macs"], cost["params"], list(cost["clip_shape"])) == (
        totals["macs"],
        totals["params"],
        list(clip_shape),
    )
    verdict = "the network above" if same else "NOT the network above: exported from another one"
    return (
        f"export: {card['path']} (model {card.get('model_name')}, version {card.get('version')}): "
        f"its model card counts {cost['macs']:,} MACs and {cost['params']:,} parameters: {verdict}"
    )


def describe_run(run: RunNetwork, per_layer: bool = True) -> tuple[str, dict]:
    """The report of ``run``: its facts, the cost table and totals of its network, and the
    export's count. Returns ``(text, summary)``; ``summary`` is the network's (see
    ``network_description``) with ``run``: the facts and the export's cost."""
    if run.kind == BACKBONE:
        c = run.config
        text, summary = describe_backbone(
            c.backbone, (run.strategy,), run.clip_shape, per_layer, num_classes=c.num_classes,
            blocks=c.blocks, width_multiplier=c.width_multiplier,
            temporal_downsampling=c.temporal_downsampling,
            stem_temporal_kernel=c.stem_temporal_kernel, input_frames=c.input_frames,
            input_size=c.input_size,
        )  # fmt: skip
        totals = summary["strategies"][0]
    else:
        text, summary = describe_network(run.config, run.strategy, run.clip_shape, per_layer)
        totals = summary["totals"]
    lines = [*run.facts, "", text]
    if run.export:
        lines.append(_export_line(run.export, totals, run.clip_shape))
    summary["run"] = {
        "facts": list(run.facts),
        "export": run.export and {"path": run.export["path"], **run.export["cost"]},
    }
    return "\n".join(lines), summary
