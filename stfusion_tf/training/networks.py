"""What a run fine-tunes, evaluates and exports: the template's searched strategy, or a 3D backbone.

Two classes behind one interface (``NetworkRun``), as KerasHub puts one backbone per file behind
one ``Backbone`` base, so the phases read ``ctx.network`` instead of branching on the family:

- ``TemplateRun``: the method itself. Every phase runs; the fine-tuned network is the best
  strategy of the ``sample`` phase, pruned from the search template (optionally S, ST and S+ST
  all the way too, trained alike); evaluation adds the same strategies on the template's weights.
- ``BackboneRun``: the paper's generalization study (section 4.5): the fusion choices found on
  the template are put into another network (``stfusion_tf.models.backbones``); only
  ``finetune``, ``evaluate`` and ``export`` run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import keras
import tensorflow as tf

from stfusion_tf import inflation, scoring
from stfusion_tf import strategy as strategy_lib
from stfusion_tf.batch_norm_recalibration import recalibrate_batch_norm
from stfusion_tf.models import backbones
from stfusion_tf.models import template as template_lib
from stfusion_tf.training.checkpointing import restore_weights
from stfusion_tf.training.config import BACKBONE_PHASES, PHASES, TRAIN_SPLIT
from stfusion_tf.training.workspace import is_done

FROM_PROBABILITIES = "from_probabilities"
ALL_THE_WAY_FINETUNE = "finetune_all_the_way"


def all_the_way_phase(unit: str) -> str:
    """The phase (``train/<phase>/``) that fine-tunes the all-the-way strategy of ``unit``."""
    return f"{ALL_THE_WAY_FINETUNE}/{unit}"


# --- Template networks of a run ------------------------------------------------------------------


def build_template(ctx, gate_mode: str, dropout: float, **overrides):
    """The run's template (``ctx.template_config`` with ``overrides``), under the scope."""
    config = dataclasses.replace(ctx.template_config, dropout=dropout, **overrides)
    with ctx.distribution.scope():
        return template_lib.build_network(config, gate_mode=gate_mode)


def build_search_template(
    ctx,
    gate_mode: str = "sample",
    dropout: float = 0.0,
    length_scale: float | None = None,
    temperature: float | None = None,
    init_drop_probability: float | None = None,
):
    """The template of the v-DropPath phase: N from the train manifest, lambda, tau, p0."""
    overrides = {"num_examples": ctx.num_examples(TRAIN_SPLIT)}
    for name, value in (
        ("length_scale", length_scale),
        ("temperature", temperature),
        ("init_drop_probability", init_drop_probability),
    ):
        if value is not None:
            overrides[name] = value
    return build_template(ctx, gate_mode, dropout, **overrides)


def load_search_template(ctx, gate_mode: str = "expected"):
    """The template with the weights and drop logits at the end of the search phase."""
    model = build_search_template(ctx, gate_mode)
    restore_weights(ctx, model, "search")
    return model


def pruned_from_search(ctx, strategy, dropout: float):
    """The pruned network of ``strategy`` with the search template's weights, under the scope."""
    template = build_search_template(ctx, "expected", dropout)
    restore_weights(ctx, template, "search")
    with ctx.distribution.scope():
        pruned = template_lib.build_network(template.config, strategy)
    template_lib.transfer_weights(template, pruned)
    return pruned


def load_pruned(ctx, strategy, phase: str):
    """The pruned network of ``strategy`` with the weights ``phase`` fine-tuned."""
    config = dataclasses.replace(ctx.template_config, num_examples=ctx.num_examples(TRAIN_SPLIT))
    model = template_lib.build_network(config, strategy)
    restore_weights(ctx, model, phase)
    return model


def inflate_imagenet(ctx, model, name: str) -> None:
    """Starts ``model`` from 2D ImageNet weights (``ctx.imagenet_weights``), inflated."""
    source = inflation.load_2d_network(name, weights=ctx.imagenet_weights)
    report = inflation.inflate(source, model)
    ctx.log(
        f"[init] {name} ImageNet weights from {ctx.imagenet_weights} inflated"
        + (f"; left as built: {', '.join(report.skipped)}" if report.skipped else "")
    )


# --- The interface ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FinetuneJob:
    """One network the ``finetune`` phase trains: its phase folder, strategy and builder.

    ``build(dropout)`` returns the network to train, under the distribution scope, with its
    starting weights; ``summary`` is added to the phase's ``DONE`` summary.
    """

    phase: str
    strategy: strategy_lib.FusionStrategy
    build: Callable[[float], keras.Model]
    description: str
    summary: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One network the ``evaluate`` phase scores; ``load()`` builds it with its weights."""

    name: str
    strategy: strategy_lib.FusionStrategy
    load: Callable[[], keras.Model]
    weights: str


class NetworkRun:
    """The interface of the two network families of a run (see the module docstring)."""

    kind: str = ""
    phases: tuple[str, ...] = ()

    def prerequisite(self, phase: str) -> str | None:
        """The phase that must have finished before ``phase`` (None for the first)."""
        index = self.phases.index(phase)
        return self.phases[index - 1] if index else None

    def to_dict(self) -> dict | None:
        """What ``run_config.json``, ``results.json`` and the model card store about it."""
        raise NotImplementedError

    def best_strategy(self, ctx) -> strategy_lib.FusionStrategy:
        """The strategy of the fine-tuned network."""
        raise NotImplementedError

    def finetune_jobs(self, ctx, all_the_way: bool) -> list[FinetuneJob]:
        raise NotImplementedError

    def load_finetuned(self, ctx) -> keras.Model:
        """The network of the ``finetune`` phase with its fine-tuned weights."""
        raise NotImplementedError

    def candidates(
        self, ctx, *, all_the_way: bool, recalibrate_bn_batches: int = 0, train_batches=None
    ) -> Iterator[Candidate]:
        """The networks to evaluate, the fine-tuned one first (load each after the one before
        has been evaluated: one network in memory at a time). Networks that were not
        fine-tuned get their BN statistics re-estimated on ``recalibrate_bn_batches`` batches
        of ``train_batches()`` when > 0."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class TemplateRun(NetworkRun):
    """The template's searched strategy (every phase), pruned and fine-tuned."""

    kind = "template"
    phases = PHASES

    def to_dict(self) -> None:
        return None

    def best_strategy(self, ctx):
        strategy, _ = scoring.read_best_strategy(ctx.search_dir)
        return strategy

    def finetune_jobs(self, ctx, all_the_way: bool) -> list[FinetuneJob]:
        strategies = [("finetune", self.best_strategy(ctx))]
        if all_the_way:
            strategies += [
                (all_the_way_phase(s.units[0]), s)
                for s in scoring.all_the_way_strategies(ctx.template_config)
            ]
        return [
            FinetuneJob(
                phase,
                strategy,
                build=lambda dropout, s=strategy: pruned_from_search(ctx, s, dropout),
                description=f"strategy {strategy}",
            )
            for phase, strategy in strategies
        ]

    def load_finetuned(self, ctx):
        return load_pruned(ctx, self.best_strategy(ctx), "finetune")

    def candidates(self, ctx, *, all_the_way, recalibrate_bn_batches=0, train_batches=None):
        best = self.best_strategy(ctx)
        yield Candidate(
            "opt_finetuned",
            best,
            lambda: self.load_finetuned(ctx),
            "fine-tuned pruned network (finetune phase)",
        )
        template = load_search_template(ctx, "expected")
        others = [("opt_template", best)]
        if all_the_way:
            others += [(s.units[0], s) for s in scoring.all_the_way_strategies(template.config)]
        for name, strategy in others:
            phase = all_the_way_phase(name)
            if name in strategy_lib.ALL_THE_WAY_UNITS and is_done(ctx.phase_dir(phase)):
                yield Candidate(
                    name,
                    strategy,
                    lambda s=strategy, p=phase: load_pruned(ctx, s, p),
                    f"fine-tuned pruned network ({phase})",
                )
                continue
            weights = "search template, pruned, not fine-tuned"
            if recalibrate_bn_batches:
                weights += f", BN recalibrated on {recalibrate_bn_batches} train batches"

            def load(s=strategy):
                pruned = template_lib.prune(template, s)
                if recalibrate_bn_batches:
                    recalibrate_batch_norm(pruned, train_batches(), recalibrate_bn_batches)
                return pruned

            yield Candidate(name, strategy, load, weights)


@dataclasses.dataclass(frozen=True)
class BackboneRun(NetworkRun):
    """A fine-tune (and evaluation, export) of a 3D backbone instead of the pruned template.

    The strategy is a name (``S``, ``ST``, ``S+ST``, ``opt_something``, ``opt_kinetics``), a
    compact string of the backbone's block sizes, or ``from_probabilities[:PATH]``: the
    template's ``probabilities.json`` (of this workspace, or PATH) mapped by relative depth
    (``strategy.strategy_from_probabilities``).

    Args:
      name: one of ``stfusion_tf.models.backbones.BACKBONES``.
      strategy: see above.
      blocks: blocks per stage (None: the backbone's own), for small networks.
      width_multiplier: channel multiplier, for small networks.
      temporal_downsampling: halve time where space halves after the stem.
    """

    name: str
    strategy: str = FROM_PROBABILITIES
    blocks: tuple[int, ...] | None = None
    width_multiplier: float = 1.0
    temporal_downsampling: bool = False

    kind = "backbone"
    phases = BACKBONE_PHASES

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["blocks"] = None if self.blocks is None else list(self.blocks)
        return data

    def best_strategy(self, ctx):
        """The backbone's ``FusionStrategy`` (see the class docstring)."""
        sizes = backbones.BackboneConfig(
            self.name, len(ctx.labels), blocks=self.blocks, width_multiplier=self.width_multiplier
        ).fusion_block_sizes
        if self.strategy.split(":", 1)[0] == FROM_PROBABILITIES:
            path = self.strategy.partition(":")[2] or os.path.join(
                ctx.search_dir, scoring.PROBABILITIES_FILE
            )
            if not tf.io.gfile.exists(path):
                raise FileNotFoundError(
                    f"No template probabilities at {path!r} for --backbone_strategy={self.strategy}: "
                    "run the template's phases (warmup,search,sample) first, or name a "
                    "probabilities.json with --backbone_strategy=from_probabilities:PATH, or a "
                    "strategy (S, ST, S+ST, opt_something, opt_kinetics)."
                )
            return strategy_lib.strategy_from_probabilities(path, sizes)
        return strategy_lib.resolve_strategy(self.strategy, sizes)

    def build(self, ctx, dropout: float, strategy=None):
        """The backbone with its strategy, under the distribution scope."""
        with ctx.distribution.scope():
            return backbones.build_backbone(
                self.name,
                strategy or self.best_strategy(ctx),
                len(ctx.labels),
                input_frames=ctx.spec.num_frames,
                dropout=dropout,
                temporal_downsampling=self.temporal_downsampling,
                blocks=self.blocks,
                width_multiplier=self.width_multiplier,
                synchronized_batch_norm=ctx.template_config.synchronized_batch_norm,
            )

    def finetune_jobs(self, ctx, all_the_way: bool) -> list[FinetuneJob]:
        strategy = self.best_strategy(ctx)

        def build(dropout):
            model = self.build(ctx, dropout, strategy)
            if ctx.imagenet_weights:
                inflate_imagenet(ctx, model, self.name)
            return model

        return [
            FinetuneJob(
                "finetune",
                strategy,
                build,
                description=f"{self.name} with strategy {strategy}",
                summary={"backbone": self.name},
            )
        ]

    def load_finetuned(self, ctx):
        model = self.build(ctx, dropout=0.0)
        restore_weights(ctx, model, "finetune")
        return model

    def candidates(self, ctx, *, all_the_way, recalibrate_bn_batches=0, train_batches=None):
        yield Candidate(
            self.name,
            self.best_strategy(ctx),
            lambda: self.load_finetuned(ctx),
            f"fine-tuned {self.name} (finetune phase)",
        )
