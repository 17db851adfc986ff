"""The run report: ``<workspace>/report.html``, one page that shows what a run learned from what.

    python -m stfusion_tf.report_page --workspace=/tmp/stfusion_demo [--records_dir=...]

Sections, each from the workspace's own files (``WORKSPACE.md``): the dataset (fingerprint,
videos per split and class from the manifests, a contact sheet of training videos), the
probability space (the marginal-probability chart, the accuracy-vs-MACs chart of the scored
strategies, ``strategies.csv`` as a table), the test results of ``results.json`` with the
protocol of each metric, and the model card of the export. A section whose files are not there
says which phase writes them.

The page is self-contained: images are inlined as ``data:`` URIs, the style and the script (click
a column header to sort a table) are in the page, and its content security policy forbids every
other source, so it opens the same from a laptop, a bucket or an e-mail, and a page that reached
for the network would fail in the browser test rather than in a reader's hands. Every text is
escaped (class names and file names are the user's data).

``stfusion_tf.train`` writes it at the end of a run (chief only); this command writes it again
for a finished workspace, e.g. one whose records were moved (``--records_dir``). The page is
built by ``stfusion_tf.report_page``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app, flags

from tfrecords_tools import command_line
from tfrecords_tools import format as fmt


def define_flags() -> None:
    """The command-line flags."""
    flags.DEFINE_string("workspace", None, "The run's root folder (WORKSPACE.md).")
    flags.DEFINE_string(
        "records_dir", None, "The records the run trained on; default <workspace>/examples."
    )
    flags.mark_flag_as_required("workspace")


def main(argv: Sequence[str]) -> None:
    del argv
    import tensorflow as tf  # with the page's modules: only once the flags are checked

    from stfusion_tf import report_page

    workspace = flags.FLAGS.workspace
    records_dir = flags.FLAGS.records_dir or os.path.join(workspace, "examples")
    if not tf.io.gfile.isdir(os.path.join(workspace, "train")):
        raise app.UsageError(
            f"{workspace!r} holds no run (no train/ folder): give the --workspace of "
            "stfusion_tf.train."
        )
    if not tf.io.gfile.exists(os.path.join(records_dir, fmt.LABEL_MAP_FILENAME)):
        raise app.UsageError(
            f"No records in {records_dir!r} (no {fmt.LABEL_MAP_FILENAME}): pass --records_dir, "
            "the folder the run trained on."
        )
    path = report_page.write_report_page(workspace, records_dir)
    print(f"Wrote {path}")


def cli() -> None:
    """The command line: ``python -m stfusion_tf.report_page`` and the ``stfusion-report``
    script."""
    define_flags()
    command_line.run(main, imports=("tensorflow",))
