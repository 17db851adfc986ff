"""The phase table: each phase's name, the splits it reads, its done marker and its run function.

Prerequisites, skipping and the order of a run all read this one table: a phase needs the one
before it in ``ctx.network.phases`` to have run now or finished before (its marker exists);
a phase whose marker exists is skipped by its run function; a phase can be tested alone on a
workspace prepared with its prerequisites' markers and checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import tensorflow as tf

from stfusion_tf import scoring
from stfusion_tf.report import RESULTS_FILE
from stfusion_tf.training import evaluate, export, finetune, sample, warmup
from stfusion_tf.training import search as search_phase
from stfusion_tf.training.config import (
    HOLDOUT_SPLIT,
    PHASES,
    TEST_SPLIT,
    TRAIN_SPLIT,
    PhaseSettings,
)
from stfusion_tf.training.workspace import DONE


@dataclasses.dataclass(frozen=True)
class Phase:
    """One row of the table.

    Args:
      name: the phase's name (``--phases``).
      splits: the record splits it reads (checked before any phase starts).
      marker: ``marker(ctx)``, the file whose presence says the phase has finished.
      run: ``run(ctx, settings)``, the phase itself; returns its summary, or None if it was
        already done.
    """

    name: str
    splits: tuple[str, ...]
    marker: Callable[..., str]
    run: Callable[..., dict | None]


def _done_marker(name: str) -> Callable[..., str]:
    return lambda ctx: os.path.join(ctx.phase_dir(name), DONE)


PHASE_TABLE = {
    phase.name: phase
    for phase in (
        Phase("warmup", (TRAIN_SPLIT,), _done_marker("warmup"), warmup.run),
        Phase("search", (TRAIN_SPLIT, HOLDOUT_SPLIT), _done_marker("search"), search_phase.run),
        Phase(
            "sample",
            (HOLDOUT_SPLIT,),
            lambda ctx: os.path.join(ctx.search_dir, scoring.BEST_STRATEGY_FILE),
            sample.run,
        ),
        Phase("finetune", (TRAIN_SPLIT,), _done_marker("finetune"), finetune.run),
        Phase(
            "evaluate",
            (TEST_SPLIT,),
            lambda ctx: os.path.join(ctx.workspace, RESULTS_FILE),
            evaluate.run,
        ),
        Phase("export", (), _done_marker("export"), export.run),
    )
}
assert tuple(PHASE_TABLE) == PHASES


def check_phases(phases) -> list[str]:
    """``phases`` (names, possibly with blanks) in run order, each once; raises on unknown."""
    phases = [p.strip() for p in phases if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise ValueError(f"`phases` must be a subset of {PHASES}. Received: phases={phases!r}")
    return sorted(set(phases), key=PHASES.index)


def splits_needed(phases) -> list[str]:
    """The splits that ``phases`` read, in the order train, holdout, test.

    >>> splits_needed(["sample", "evaluate"])
    ['holdout', 'test']
    """
    needed = {split for phase in phases for split in PHASE_TABLE[phase].splits}
    return [s for s in (TRAIN_SPLIT, HOLDOUT_SPLIT, TEST_SPLIT) if s in needed]


def check_prerequisites(ctx, phases) -> None:
    """Each phase needs the one before it in ``ctx.network.phases``, run now or finished before
    (its marker exists); phases the network does not have are refused."""
    network = ctx.network
    foreign = [p for p in phases if p not in network.phases]
    if foreign:
        raise ValueError(
            f"Phases {foreign} need the template; with --backbone={network.name} "
            f"only {list(network.phases)} run (the strategy comes from "
            "--backbone_strategy). Run the template's phases without --backbone."
        )
    for phase in phases:
        before = network.prerequisite(phase)
        if before is None or before in phases:
            continue
        marker = PHASE_TABLE[before].marker(ctx)
        if not tf.io.gfile.exists(marker):
            index = PHASES.index(phase)
            raise ValueError(
                f"Phase {phase!r} needs phase {before!r}, which has not finished in "
                f"{ctx.workspace!r} (no {marker}): add it to --phases "
                f"(e.g. --phases={','.join(PHASES[: index + 1])})."
            )


def run_phases(ctx, phases, settings: PhaseSettings) -> dict:
    """Runs ``phases`` (checked names, in order) with ``settings``: ``{phase: summary}``."""
    return {phase: PHASE_TABLE[phase].run(ctx, settings) for phase in phases}
