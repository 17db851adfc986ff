"""The run report, ``<workspace>/report.html``: one self-contained page that shows what a run
learned from what (what it holds and why it is built so: ``stfusion_tf.report_page_command``,
the command's front door and ``--help``, which imports nothing heavy).

``report_page`` builds the page from a workspace's files, section by section
(``dataset_section``, ``search_section``, ``results_section``, ``model_card_section``);
``write_report_page`` writes it, as ``stfusion_tf.train`` does at the end of a run.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command: its flags are checked before TensorFlow loads
    from tfrecords_tools import command_line

    command_line.hand_over("stfusion_tf.report_page_command")

import base64
import csv
import datetime
import html
import io
import json
import os
from collections.abc import Sequence

import tensorflow as tf

from stfusion_tf import report, scoring
from stfusion_tf.export import MODEL_CARD_FILENAME
from tfrecords_tools import contact_sheet, files
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

# Who writes what a section shows, for the line that replaces a missing one.
_WRITTEN_BY = {
    "records": "pipelines.make_tfrecords",
    "search": "the sample phase (stfusion_tf.train --phases=sample)",
    "results": "the evaluate phase (stfusion_tf.train --phases=evaluate)",
    "export": "the export phase (stfusion_tf.train --phases=export)",
}
_SPLIT_ORDER = ("train", "holdout", "val", "test")
# The contact sheet: videos (rows), frames per video, which videos, pixel height of a frame.
_SHEET_VIDEOS, _SHEET_FRAMES, _SHEET_SEED, _SHEET_HEIGHT = 6, 8, 0, 64

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; background: #f3f3f3; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
img { max-width: 100%; border: 1px solid #ddd; } .scroll { overflow-x: auto; }
.missing { color: #a33; } pre { background: #f7f7f7; padding: 0.5em; overflow-x: auto; }
"""

# Sorts a table.sortable by the clicked column: numbers by their data-value (cells without one
# last), text alphabetically; a second click reverses.
_SCRIPT = """
function sortTable(th) {
  var body = th.closest("table").tBodies[0];
  var column = Array.prototype.indexOf.call(th.parentNode.children, th);
  var ascending = th.getAttribute("aria-sort") !== "ascending";
  function key(row) {
    var cell = row.cells[column];
    return cell.dataset.value !== undefined ? parseFloat(cell.dataset.value) : cell.textContent;
  }
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = key(a), y = key(b), order;
    if (typeof x === "number" && typeof y === "number") order = x - y;
    else if (typeof x === "number" || typeof y === "number") return typeof x === "number" ? -1 : 1;
    else order = x.localeCompare(y);
    return ascending ? order : -order;
  });
  rows.forEach(function (row) { body.appendChild(row); });
  th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () { sortTable(th); });
});
"""

_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _cell(value) -> str:
    """A ``<td>``: numbers right-aligned and sorted by their value, text escaped; a ``(text,
    number)`` pair shows the text and sorts by the number."""
    if isinstance(value, tuple):
        shown, number = value
        return f'<td class="number" data-value="{number!r}">{_text(shown)}</td>'
    if isinstance(value, bool) or value is None:
        return f"<td>{'' if value is None else _text(value)}</td>"
    if isinstance(value, int | float):
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        return f'<td class="number" data-value="{value!r}">{shown}</td>'
    return f"<td>{_text(value)}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """An HTML table whose rows sort by the column whose header is clicked.

    >>> print(table(["class", "videos"], [["<b>", 3]]))
    <div class="scroll"><table class="sortable"><thead><tr><th>class</th><th>videos</th></tr></thead>
    <tbody><tr><td>&lt;b&gt;</td><td class="number" data-value="3">3</td></tr></tbody></table></div>
    """
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>{body}</tbody></table></div>"
    )


def facts(pairs: Sequence[tuple[str, object]]) -> str:
    """A two-column table of named values (not sortable: its order is the reading order)."""
    rows = "".join(f"<tr><th>{_text(name)}</th>{_cell(value)}</tr>" for name, value in pairs)
    return f"<table>{rows}</table>"


def image(png: bytes, alt: str) -> str:
    """An ``<img>`` holding the PNG itself (a ``data:`` URI)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{_text(alt)}" src="data:image/png;base64,{data}"></p>'


def _missing(what: str, path: str, writer: str) -> str:
    return f'<p class="missing">No {_text(what)} ({_text(path)}): written by {_text(writer)}.</p>'


def _read_json(path: str) -> dict:
    return json.loads(files.read_text(path))


def _mmacs(macs) -> tuple[str, float] | str:
    return "" if macs in (None, "") else (f"{float(macs) / 1e6:.2f}", float(macs))


def dataset_section(records_dir: str) -> str:
    """Fingerprint, videos per split and class (the manifests), and a contact sheet."""
    label_map = os.path.join(records_dir, fmt.LABEL_MAP_FILENAME)
    if not tf.io.gfile.exists(label_map):
        return _missing("records", label_map, _WRITTEN_BY["records"])
    classes = fmt.read_label_map(label_map)
    fp = fingerprint_lib.read_fingerprint(records_dir)
    splits = sorted(
        (s for s in fp["splits"] if tf.io.gfile.exists(fmt.manifest_path(records_dir, s))),
        key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s),
    )
    manifests = {s: manifest_lib.read_manifest(records_dir, s) for s in splits}
    counts = {s: manifests[s]["examples_per_class"] for s in splits}
    dataset = [
        ("dataset id", fp["id"]),
        ("records", records_dir),
        ("classes", len(classes)),
        ("conversion options", json.dumps(fp["options"], sort_keys=True)),
        ("decoder", json.dumps(fp["decoder"], sort_keys=True)),
        ("format version", fp["format_version"]),
    ]
    per_class = [[name, *(counts[s].get(name, 0) for s in splits)] for name in classes]
    parts = [
        facts(dataset),
        "<h3>Videos per split and class</h3>",
        table(["class", *splits], per_class),
        table(
            ["split", "videos", "failures"],
            [[s, fp["splits"][s]["num_examples"], fp["splits"][s]["num_failures"]] for s in splits],
        ),
    ]
    if "train" in manifests:
        shards = manifest_lib.split_shards(records_dir, "train", manifests["train"])
        samples = contact_sheet.sample_videos(shards, _SHEET_VIDEOS, _SHEET_SEED)
        sheet = contact_sheet.render_sheet(samples, _SHEET_FRAMES, _SHEET_HEIGHT)
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        parts += [
            "<h3>Contact sheet (training videos)</h3>",
            image(buffer.getvalue(), "contact sheet"),
        ]
    return "\n".join(parts)


def search_section(workspace: str) -> str:
    """The marginal-probability chart, the accuracy-vs-MACs chart and the scored strategies."""
    search_dir = os.path.join(workspace, "search")
    strategies = os.path.join(search_dir, scoring.STRATEGIES_FILE)
    if not tf.io.gfile.exists(strategies):
        return _missing("scored strategies", strategies, _WRITTEN_BY["search"])
    parts = []
    best = os.path.join(search_dir, scoring.BEST_STRATEGY_FILE)
    if tf.io.gfile.exists(best):
        record = _read_json(best)
        parts.append(
            f"<p>Best strategy: <code>{_text(record['strategy'])}</code> "
            f"({_text(record['selection'])})</p>"
        )
    for name, alt in (
        (scoring.MARGINALS_FILE, "marginal probabilities"),
        (scoring.PARETO_FILE, "accuracy vs MACs"),
    ):
        path = os.path.join(search_dir, name)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                parts.append(image(f.read(), alt))
    rows = list(csv.DictReader(io.StringIO(files.read_text(strategies))))
    columns = list(rows[0]) if rows else list(scoring.CSV_COLUMNS)
    parts += [
        "<h3>Scored strategies (holdout split)</h3>",
        table(columns, [[_csv_value(r[c]) for c in columns] for r in rows]),
    ]
    return "\n".join(parts)


def _csv_value(text: str):
    """A CSV field as a number where it is one (so its column sorts by value)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def results_section(workspace: str) -> str:
    """Every evaluated network of ``results.json``, each metric named with its protocol;
    top-5 only with more than 5 classes (otherwise it says nothing)."""
    path = os.path.join(workspace, report.RESULTS_FILE)
    if not tf.io.gfile.exists(path):
        return _missing("test results", path, _WRITTEN_BY["results"])
    results = _read_json(path)
    models = results["models"]
    num_classes = len(results["labels"])
    metrics = sorted({m for entry in models.values() for m in entry["metrics"]})
    metrics = report.shown_metrics(metrics, num_classes)
    names = dict(report.ROWS)
    chance = {m: 1.0 / num_classes for m in metrics if "top1" in m}
    rows = [["chance", "", "", "", *(chance.get(m) for m in metrics)]]
    for key, entry in models.items():
        rows.append(
            [
                names.get(key, key),
                entry["strategy"],
                entry["weights"],
                _mmacs(entry.get("macs")),
                *(entry["metrics"].get(m) for m in metrics),
            ]
        )
    header = (
        f"<p>Split <code>{_text(results['split'])}</code>, protocol "
        f"<code>{_text(results['protocol'])}</code> ({num_classes} classes). A metric named "
        "<code>name@clips=AxBcrop</code> averages the predictions of A clips by B crops per "
        "video.</p>"
    )
    return header + table(["network", "strategy", "weights", "MMACs", *metrics], rows)


def model_card_section(workspace: str) -> str:
    """The export's model card: what it serves, at what cost, and the whole card."""
    done = os.path.join(workspace, "train", "export", "DONE")
    if not tf.io.gfile.exists(done):
        return _missing("export", done, _WRITTEN_BY["export"])
    export_dir = _read_json(done)["path"]
    card = _read_json(os.path.join(export_dir, MODEL_CARD_FILENAME))
    cost = card.get("cost", {})
    saving = cost.get("macs_saving")
    served = [
        ("SavedModel", export_dir),
        ("strategy", card.get("strategy") or ""),
        ("clip shape", " x ".join(str(d) for d in card["clip_shape"])),
        ("classes", ", ".join(card["classes"])),
        ("MMACs per clip", _mmacs(cost.get("macs"))),
        ("parameters", cost.get("params", "")),
        ("MACs saved vs the template", "" if saving is None else f"{saving:.1%}"),
        ("signatures", ", ".join(card.get("signatures", {}))),
        ("created", card.get("created", "")),
    ]
    whole = json.dumps(card, indent=2, sort_keys=True)
    return (
        facts(served)
        + f"\n<details><summary>{MODEL_CARD_FILENAME}</summary><pre>{_text(whole)}</pre></details>"
    )


def report_page(workspace: str, records_dir: str) -> str:
    """The page's HTML for ``workspace`` with its records in ``records_dir``."""
    sections = [
        ("Dataset", dataset_section(records_dir)),
        ("Probability space", search_section(workspace)),
        ("Test results", results_section(workspace)),
        ("Model card", model_card_section(workspace)),
    ]
    title = f"stfusion run: {os.path.basename(os.path.normpath(workspace))}"
    created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    body = "\n".join(
        f"<section><h2>{_text(h)}</h2>\n{content}</section>" for h, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        f"<h1>{_text(title)}</h1>\n"
        f"<p>Workspace <code>{_text(workspace)}</code>, written {created}.</p>\n"
        f"{body}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def write_report_page(workspace: str, records_dir: str | None = None) -> str:
    """Writes ``<workspace>/report.html`` (atomically) and returns its path; ``records_dir``
    defaults to ``<workspace>/examples``."""
    records_dir = records_dir or os.path.join(workspace, "examples")
    path = os.path.join(workspace, report.REPORT_PAGE_FILE)
    files.write_atomically(path, report_page(workspace, records_dir))
    return path
