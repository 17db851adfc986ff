"""The training phases of the method, as a custom loop that runs under any ``tf.distribute`` strategy.

    warmup   (template, gates off, E_w epochs)                                 warmup.py
      -> search   (template, gates sampled, v-DropPath KL with lambda and N)     search.py
      -> sample   (strategies drawn from the learned probabilities, scored)      sample.py
      -> finetune (the best strategy as a pruned network, no KL)                 finetune.py
      -> evaluate (clip- and video-level top-1/top-5 on the test split)          evaluate.py
      -> export   (a SavedModel for TF Serving)                                  export.py

``phases.PHASE_TABLE`` says what each phase reads, its done marker and its run function;
``phases.run_phases`` runs a checked list of them with one ``config.PhaseSettings``. What the
phases share is a ``context.RunContext`` (the records, the workspace, the distribution, the
batch, the clip spec) whose ``network`` (``networks.TemplateRun`` or ``networks.BackboneRun``)
says what is fine-tuned, evaluated and exported. Each phase trains through ``loop.train_phase``
(checkpoints, resuming inside an epoch, TensorBoard and JSONL logs) and ``step.Trainer`` (the
distributed step; the KL enters the loss through the gates' ``add_loss``). The on-disk layout is
``WORKSPACE.md``'s: ``train/<phase>/checkpoints``, ``train/<phase>/logs``, ``train/<phase>/DONE``.

``stfusion_tf.train`` is the entry point that parses flags into these.
"""

from stfusion_tf.training.checkpointing import (
    PhaseCheckpoints,
    check_checkpoint,
    initialize_from,
    restore_weights,
)
from stfusion_tf.training.config import (
    BACKBONE_PHASES,
    HOLDOUT_SPLIT,
    PHASES,
    TEST_SPLIT,
    TRAIN_SPLIT,
    OptimizerSpec,
    PhaseSettings,
)
from stfusion_tf.training.context import RunContext
from stfusion_tf.training.evaluate import run_evaluate
from stfusion_tf.training.export import SERVING_DIR, run_export
from stfusion_tf.training.finetune import run_finetune
from stfusion_tf.training.loop import epoch_seed, phase_seed, seed_phase, train_phase
from stfusion_tf.training.networks import (
    ALL_THE_WAY_FINETUNE,
    BackboneRun,
    NetworkRun,
    TemplateRun,
    all_the_way_phase,
    build_search_template,
    load_pruned,
    load_search_template,
)
from stfusion_tf.training.optimizer import DROP_LOGIT, learning_rate_schedule, make_optimizer
from stfusion_tf.training.phases import (
    PHASE_TABLE,
    check_phases,
    check_prerequisites,
    run_phases,
    splits_needed,
)
from stfusion_tf.training.records import (
    check_records,
    conversion_options,
    read_fingerprint,
)
from stfusion_tf.training.sample import run_sample
from stfusion_tf.training.search import drop_probability_record, run_search
from stfusion_tf.training.step import Trainer, call_with_losses, replica_loss
from stfusion_tf.training.warmup import run_warmup
from stfusion_tf.training.workspace import (
    DONE,
    RUN_CONFIG,
    is_done,
    mark_done,
    write_run_config,
)

__all__ = [
    "ALL_THE_WAY_FINETUNE",
    "BACKBONE_PHASES",
    "DONE",
    "DROP_LOGIT",
    "HOLDOUT_SPLIT",
    "PHASES",
    "PHASE_TABLE",
    "RUN_CONFIG",
    "SERVING_DIR",
    "TEST_SPLIT",
    "TRAIN_SPLIT",
    "BackboneRun",
    "NetworkRun",
    "OptimizerSpec",
    "PhaseCheckpoints",
    "PhaseSettings",
    "RunContext",
    "TemplateRun",
    "Trainer",
    "all_the_way_phase",
    "build_search_template",
    "call_with_losses",
    "check_checkpoint",
    "check_phases",
    "check_prerequisites",
    "check_records",
    "conversion_options",
    "drop_probability_record",
    "epoch_seed",
    "initialize_from",
    "is_done",
    "learning_rate_schedule",
    "load_pruned",
    "load_search_template",
    "make_optimizer",
    "mark_done",
    "phase_seed",
    "read_fingerprint",
    "replica_loss",
    "restore_weights",
    "run_evaluate",
    "run_export",
    "run_finetune",
    "run_phases",
    "run_sample",
    "run_search",
    "run_warmup",
    "seed_phase",
    "splits_needed",
    "train_phase",
    "write_run_config",
]
