"""``RunInputError``: what a phase raises when what the run was given does not fit.

Problems found before any phase are ``ValueError``s of ``stfusion_tf.train.build_context``.
Some can only be found once a phase runs: a record damaged after the run's checks
(``damaged_records``), a checkpoint whose weights do not fit the network just built
(``checkpointing.initialize_from``). The command prints those in one line too, exits non-zero
and shows no traceback: one that ends inside TensorFlow would hide the file to fix.
"""

from __future__ import annotations


class RunInputError(ValueError):
    """What the run was given (its records, a checkpoint it restores) is unusable; the message
    names the file and says what to do."""
