"""What a run is asked to do: the phase names, the splits, the optimizer and the phases' settings.

Plain values with their checks, no TensorFlow state: the entry point (``stfusion_tf.train``)
builds them from flags, tests build them directly.
"""

from __future__ import annotations

import dataclasses

# The phases in their order (``phases.PHASE_TABLE`` says what each needs and how it is run).
PHASES = ("warmup", "search", "sample", "finetune", "evaluate", "export")
# The phases a backbone run has: the template's warm-up, search and sample do not apply.
BACKBONE_PHASES = ("finetune", "evaluate", "export")
TRAIN_SPLIT, HOLDOUT_SPLIT, TEST_SPLIT = "train", "holdout", "test"


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """SGD with momentum and a piecewise-constant learning rate, for one phase.

    Args:
      learning_rate: base learning rate (the paper: 0.005; 0.01 Kinetics).
      decay_epochs: epochs (from the phase's start) after which the rate is multiplied by
        ``decay_factor`` (the paper: 40, 60, 80; 40, 80 Kinetics).
      decay_factor: the multiplier at each decay epoch (0.1).
      momentum: SGD momentum (0.9).
      weight_decay: decoupled weight decay, never applied to the drop logits (the authors'
        code uses 0 during the v-DropPath phase).
      logit_lr_multiplier: learning-rate multiplier of the drop logits
        (``stfusion_tf.training.optimizer``); 1 keeps the paper's setting.

    Example: the paper's schedule, two decays in by epoch 65.

    >>> spec = OptimizerSpec(learning_rate=0.005, decay_epochs=(40, 60, 80))
    >>> [round(spec.rate_at_epoch(e), 8) for e in (0, 39, 40, 65, 80)]
    [0.005, 0.005, 0.0005, 5e-05, 5e-06]
    """

    learning_rate: float = 0.005
    decay_epochs: tuple[int, ...] = ()
    decay_factor: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    logit_lr_multiplier: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "decay_epochs", tuple(int(e) for e in self.decay_epochs))
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be > 0. Received: learning_rate={self.learning_rate!r}"
            )
        if list(self.decay_epochs) != sorted(set(self.decay_epochs)) or any(
            e < 1 for e in self.decay_epochs
        ):
            raise ValueError(
                "`decay_epochs` must be increasing positive epochs. "
                f"Received: decay_epochs={self.decay_epochs!r}"
            )
        if not 0 < self.decay_factor <= 1:
            raise ValueError(
                f"`decay_factor` must be in (0, 1]. Received: decay_factor={self.decay_factor!r}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={self.weight_decay!r}"
            )
        if not self.logit_lr_multiplier > 0:
            raise ValueError(
                "`logit_lr_multiplier` must be > 0. "
                f"Received: logit_lr_multiplier={self.logit_lr_multiplier!r}"
            )

    def rate_at_epoch(self, epoch: float) -> float:
        """The learning rate during (0-based) ``epoch``."""
        decays = sum(1 for e in self.decay_epochs if epoch >= e)
        return self.learning_rate * self.decay_factor**decays


@dataclasses.dataclass(frozen=True)
class PhaseSettings:
    """Every phase's own settings, in one value the phase table hands to each phase.

    The defaults are the library's; ``stfusion_tf.train`` fills every field from its flags.
    Each phase reads only its fields (``warmup_*`` the warm-up, and so on); see the phase's
    ``run_*`` function for what each means.
    """

    warmup_epochs: int = 1
    warmup_optimizer: OptimizerSpec = OptimizerSpec()
    warmup_dropout: float = 0.5
    init_checkpoint: str | None = None
    init_skip: tuple[str, ...] = ()
    search_epochs: int = 1
    search_optimizer: OptimizerSpec = OptimizerSpec()
    search_dropout: float = 0.0
    length_scale: float = 1.0
    temperature: float = 0.2
    init_drop_probability: float = 0.1
    num_strategies: int = 100
    bn_recalibration_batches: int = 0
    holdout_num_clips: int = 1
    cache_holdout: bool = False
    scoring_method: str = "pruned"
    finetune_epochs: int = 1
    finetune_optimizer: OptimizerSpec = OptimizerSpec()
    finetune_dropout: float = 0.5
    finetune_all_the_way: bool = False
    test_num_clips: int = 10
    test_num_crops: int = 1
    evaluate_all_the_way: bool = False
    model_name: str = "stfusion"
    export_version: int | None = None

    def __post_init__(self):
        for name in ("warmup_epochs", "search_epochs", "finetune_epochs", "num_strategies"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        for name in ("warmup_dropout", "search_dropout", "finetune_dropout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={value!r}")
