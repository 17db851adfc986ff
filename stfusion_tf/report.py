"""The end-of-run summary a person reads in five seconds: is the searched strategy better than
chance and than every all-the-way strategy, at what cost, and where the artifacts are.

It reads only the workspace's files (``results.json``, ``search/``, ``train/export/DONE``), so
``stfusion_tf.train`` prints it after its phases and ``stfusion_tf.study`` per run, and anyone can
print it again for a finished workspace.
"""

from __future__ import annotations

import json
import os

RESULTS_FILE = "results.json"
REPORT_PAGE_FILE = "report.html"  # stfusion_tf.report_page
# results.json model keys, in the order the table shows them, with the row's name.
ROWS = (
    ("S", "S all the way"),
    ("ST", "ST all the way"),
    ("S+ST", "S+ST all the way"),
    ("opt_finetuned", "searched"),
)
# What a workspace holds for a person to open, in the order the summary lists them.
ARTIFACTS = (
    ("marginal probabilities (the paper's key figure)", "search/marginals.png"),
    ("accuracy vs MACs of every scored strategy", "search/pareto.png"),
    ("scored strategies", "search/strategies.csv"),
    ("probability space", "search/probabilities.json"),
    ("best strategy", "search/best_strategy.json"),
    ("test results", RESULTS_FILE),
    ("TensorBoard logs (tensorboard --logdir=...)", "train"),
    ("run report (open in a browser)", REPORT_PAGE_FILE),
)


def shown_metrics(names, num_classes: int) -> list[str]:
    """The metric names worth showing, in their order: top-5 only with more than 5 classes
    (with 5 or fewer every prediction is in the top 5, so it is 1.0 and says nothing).

    >>> shown_metrics(["video_top1@clips=1x1crop", "video_top5@clips=1x1crop"], 4)
    ['video_top1@clips=1x1crop']
    """
    return [name for name in names if num_classes > 5 or "top5" not in name]


def metric_lines(metrics: dict[str, float], num_classes: int) -> list[str]:
    """One short line per protocol, video-level first: what a person reads of an evaluation
    (the metric names carry the protocol: ``video_top1@clips=10x1crop``).

    >>> metric_lines({"clip_top1@clips=1x1crop": 0.5, "clip_loss@clips=1x1crop": 1.25,
    ...               "video_top1@clips=1x1crop": 0.75, "video_top5@clips=1x1crop": 1.0}, 4)
    ['clips=1x1crop: video top-1 0.750, clip top-1 0.500, clip loss 1.250']
    """
    by_protocol: dict[str, list[tuple[str, float]]] = {}
    for name in shown_metrics(metrics, num_classes):
        measure, _, protocol = name.partition("@")
        level, _, what = measure.partition("_")
        label = {"top1": "top-1", "top5": "top-5"}.get(what, what)
        by_protocol.setdefault(protocol, []).append((f"{level} {label}", metrics[name]))
    return [
        f"{protocol}: "
        + ", ".join(f"{label} {value:.3f}" for label, value in sorted(items, key=_video_first))
        for protocol, items in by_protocol.items()
    ]


def _video_first(item: tuple[str, float]) -> bool:
    """Sort key: video-level metrics first, each level in the evaluation's own order."""
    return not item[0].startswith("video")


def main_metric(results: dict) -> str:
    """The metric the table shows: video top-1 under the run's own test protocol."""
    return f"video_top1@{results['protocol']}"


def summary_rows(results: dict) -> list[dict]:
    """The table's rows from a ``results.json`` dict: chance, then each strategy it holds.

    Each row: ``name``, ``strategy`` (compact string or ""), ``top1``, ``macs`` (or None), and
    ``weights`` (what was evaluated: fine-tuned or pruned from the template).

    >>> results = {"protocol": "clips=2x1crop", "labels": ["a", "b", "c", "d"], "models": {
    ...     "S": {"strategy": "s|s", "metrics": {"video_top1@clips=2x1crop": 0.5},
    ...           "macs": 10, "weights": "fine-tuned"}}}
    >>> [(r["name"], r["top1"]) for r in summary_rows(results)]
    [('chance', 0.25), ('S all the way', 0.5)]
    """
    metric = main_metric(results)
    rows = [
        {
            "name": "chance",
            "strategy": "",
            "top1": 1.0 / len(results["labels"]),
            "macs": None,
            "weights": "",
        }
    ]
    models = results["models"]
    for key, name in ROWS:
        if key in models:
            entry = models[key]
            rows.append(
                {
                    "name": name,
                    "strategy": entry["strategy"],
                    "top1": float(entry["metrics"][metric]),
                    "macs": int(entry["macs"]),
                    "weights": entry["weights"],
                }
            )
    return rows


def format_summary(results: dict) -> str:
    """The table of ``summary_rows``: one line per row, top-1 and millions of MACs per clip."""
    rows = summary_rows(results)
    width = max(len(r["name"]) for r in rows)
    strategy_width = max(len("strategy"), *(len(r["strategy"]) for r in rows))
    lines = [
        f"Test split: {main_metric(results)} ({len(results['labels'])} classes)",
        f"{'':<{width}}  {'strategy':<{strategy_width}}  {'top-1':>6}  {'MMACs':>8}  weights",
    ]
    for r in rows:
        macs = "" if r["macs"] is None else f"{r['macs'] / 1e6:.2f}"
        lines.append(
            f"{r['name']:<{width}}  {r['strategy']:<{strategy_width}}  {r['top1']:>6.3f}  "
            f"{macs:>8}  {r['weights']}".rstrip()
        )
    return "\n".join(lines)


def export_dir(workspace: str) -> str | None:
    """The version folder the run's export phase wrote (its ``train/export/DONE`` marker says
    which), or None before the export."""
    done = os.path.join(workspace, "train", "export", "DONE")
    if not os.path.exists(done):
        return None
    with open(done) as f:
        return json.load(f)["path"]


def artifact_lines(workspace: str) -> list[str]:
    """``what: path`` for each artifact the workspace holds (missing ones are left out)."""
    found = [(what, os.path.join(workspace, path)) for what, path in ARTIFACTS]
    exported = export_dir(workspace)
    if exported:
        found.append(("SavedModel for TF Serving", exported))
    found = [(what, path) for what, path in found if os.path.exists(path)]
    width = max((len(what) for what, _ in found), default=0)
    return [f"{what:<{width}}  {path}" for what, path in found]


def workspace_summary(workspace: str) -> str:
    """The summary table (if the run was evaluated) and the artifact paths of ``workspace``."""
    parts = []
    path = os.path.join(workspace, RESULTS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            parts.append(format_summary(json.load(f)))
    lines = artifact_lines(workspace)
    if lines:
        parts.append("Artifacts:\n" + "\n".join(f"  {line}" for line in lines))
    return "\n\n".join(parts)
