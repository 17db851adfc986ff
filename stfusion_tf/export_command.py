"""Exports a fine-tuned checkpoint of ``stfusion_tf.train`` as a versioned SavedModel for TF
Serving, and prints the version folder.

    python -m stfusion_tf.export --checkpoint=/data/run/train/finetune \
        --serving_root=/data/run/serving --model_name=stfusion [--results=/data/run/results.json]

Writes ``<serving_root>/<model_name>/<version>/`` (the next free version unless ``--version``
names one; an existing version is never overwritten): the pruned network with its
preprocessing inside, the signatures ``serving_default`` (clips) and ``serve_frames`` (JPEG
frames), ``model_card.json`` beside it and warm-up requests for TF Serving. Why each of these is
so: ``stfusion_tf.export``, the library this command runs once its flags are checked. A
missing checkpoint or an existing version is one line, exit status 2.
"""

from __future__ import annotations

import sys

from absl import flags

from tfrecords_tools import command_line


def define_flags() -> None:
    flags.DEFINE_string(
        "checkpoint",
        None,
        "The fine-tuned network: a phase folder (<workspace>/train/finetune), its checkpoints/ "
        "folder or a checkpoint prefix.",
    )
    flags.DEFINE_string("serving_root", None, "Root folder TF Serving loads models from.")
    flags.DEFINE_string("model_name", None, "Model folder / TF Serving model name.")
    flags.DEFINE_integer("version", 0, "Version number; 0: the next free one.")
    flags.DEFINE_string("results", None, "The run's results.json (test metrics for the card).")
    flags.DEFINE_integer("top_k", 5, "Classes in top_k_classes / top_k_labels.")
    flags.DEFINE_integer(
        "max_frame_pixels",
        None,
        "Largest frame (height x width) serve_frames accepts; a larger one is refused, from "
        "its header, before anything is decoded. Default: serving_inputs.MAX_FRAME_PIXELS "
        "(2048 x 2048).",
    )
    flags.mark_flags_as_required(["checkpoint", "serving_root", "model_name"])


def main(argv):
    """Exports ``--checkpoint``; prints the version folder. A setup error exits 2 with its
    message, no traceback."""
    from stfusion_tf import export  # TensorFlow: only once the flags are checked

    f = flags.FLAGS
    limits = {} if f.max_frame_pixels is None else {"max_frame_pixels": f.max_frame_pixels}
    try:
        path = export.export_checkpoint(
            f.checkpoint,
            f.serving_root,
            f.model_name,
            version=f.version or None,
            results=f.results,
            top_k=f.top_k,
            **limits,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def cli() -> None:
    """The command line: ``python -m stfusion_tf.export`` and the ``stfusion-export`` script."""
    define_flags()
    command_line.run(main, imports=("tensorflow",))
