"""The run report page (stfusion_tf.report_page) on a workspace written here: real shards of
synthetic frames, a fingerprint made by tfrecords_tools.fingerprint, and the search, results and
model-card files in the layouts of WORKSPACE.md, with a class name that is HTML. The page of a
real training run is opened in tests/test_train_cli.py."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil

import pytest
from PIL import Image

from stfusion_tf import report_page, scoring
from tests import browser, commands
from tests.test_inspect import make_record, write_shard
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt

# A class name is the user's data: the page must show it as text, never as markup.
HOSTILE = '<img src=x onerror="alert(1)">&amp;'
CLASSES = ["move_left", "move_right", HOSTILE]
# (strategy, holdout top-1, MACs): MACs of different digit counts, so a text sort would differ.
STRATEGIES = [("st,-|t", 1.0, 9_000_000), ("s,s|s", 0.5, 10_440_000), ("t,t|t", 0.75, 11_060_000)]


def _png(width: int, height: int, color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_records(directory: str) -> None:
    """Shards, label map, manifests (the fields the page reads) and a fingerprint made by
    ``tfrecords_tools.fingerprint``."""
    os.makedirs(directory)
    records = {
        "train": [
            make_record(0, 5, seed=1),
            make_record(1, 6, seed=2),
            dataclasses.replace(make_record(2, 5, seed=3), label_text=HOSTILE),
        ],
        "test": [make_record(0, 4, seed=4)],
    }
    fmt.write_label_map(os.path.join(directory, fmt.LABEL_MAP_FILENAME), CLASSES)
    videos = {split: [(r.filename, r.label_text) for r in rs] for split, rs in records.items()}
    shared = fingerprint_lib.shared_part(
        CLASSES, {"short_side": 32, "fps": None, "jpeg_quality": 90}, {"pyav": "18.1.0"}
    )
    fp = fingerprint_lib.make_fingerprint(
        shared, {s: fingerprint_lib.split_part(v, []) for s, v in videos.items()}
    )
    with open(os.path.join(directory, fingerprint_lib.FINGERPRINT_FILENAME), "w") as f:
        f.write(fingerprint_lib.to_json(fp))
    for split, pairs in videos.items():
        shard = os.path.join(directory, f"{split}-00000-of-00001.tfrecord")
        write_shard(shard, records[split])
        counts = {name: sum(label == name for _, label in pairs) for name in CLASSES}
        listed = [{"path": os.path.basename(shard), "bytes": os.path.getsize(shard)}]
        with open(fmt.manifest_path(directory, split), "w") as f:
            json.dump({"split": split, "examples_per_class": counts, "shards": listed}, f)


def _write_search(search_dir: str) -> None:
    os.makedirs(search_dir)
    with open(os.path.join(search_dir, scoring.STRATEGIES_FILE), "w", newline="") as f:
        writer = csv.DictWriter(f, scoring.CSV_COLUMNS, restval="")
        writer.writeheader()
        for rank, (strategy, top1, macs) in enumerate(STRATEGIES, start=1):
            writer.writerow(
                {
                    "rank": rank,
                    "strategy": strategy,
                    "kind": "sampled",
                    "holdout_top1": top1,
                    "macs": macs,
                }
            )
    with open(os.path.join(search_dir, scoring.BEST_STRATEGY_FILE), "w") as f:
        json.dump({"strategy": STRATEGIES[0][0], "selection": "holdout top-1"}, f)
    for name, (width, color) in {
        scoring.MARGINALS_FILE: (40, "red"),
        scoring.PARETO_FILE: (30, "blue"),
    }.items():
        with open(os.path.join(search_dir, name), "wb") as f:
            f.write(_png(width, 20, color))


def _write_results_and_export(workspace: str) -> None:
    metrics = {
        "video_top1@clips=2x1crop": 1.0,
        "video_top5@clips=2x1crop": 1.0,
        "video_top1@clips=1x1crop": 0.75,
    }
    entry = {
        "strategy": "st,-|t",
        "weights": "fine-tuned pruned network",
        "macs": 9_000_000,
        "metrics": metrics,
    }
    results = {
        "split": "test",
        "protocol": "clips=2x1crop",
        "labels": CLASSES,
        "models": {"opt_finetuned": entry, "S": {**entry, "strategy": "s,s|s"}},
    }
    with open(os.path.join(workspace, "results.json"), "w") as f:
        json.dump(results, f)
    export_dir = os.path.join(workspace, "serving", "stfusion", "1")
    os.makedirs(export_dir)
    os.makedirs(os.path.join(workspace, "train", "export"))
    with open(os.path.join(workspace, "train", "export", "DONE"), "w") as f:
        json.dump({"path": export_dir, "strategy": "st,-|t"}, f)
    card = {
        "strategy": "st,-|t",
        "clip_shape": [4, 24, 24, 3],
        "classes": CLASSES,
        "cost": {"macs": 9_000_000, "params": 1234, "macs_saving": 0.2},
        "signatures": {"serving_default": {}, "serve_frames": {}},
    }
    with open(os.path.join(export_dir, "model_card.json"), "w") as f:
        json.dump(card, f)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("run"))
    _write_records(os.path.join(root, "examples"))
    _write_search(os.path.join(root, "search"))
    _write_results_and_export(root)
    return root


@pytest.fixture(scope="module")
def page(workspace):
    """The page of ``workspace``, written once for the module."""
    return report_page.write_report_page(workspace)


def test_the_page_is_self_contained_and_shows_user_text_as_text(page):
    text = open(page, encoding="utf-8").read()
    assert HOSTILE not in text and 'onerror="' not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;" in text
    # Nothing outside the page: every image is a data: URI, no links, scripts or styles by URL.
    assert "http://" not in text and "https://" not in text and 'src="data:image/png' in text
    assert text.count("<img ") == 3  # contact sheet, marginals, Pareto
    assert "Content-Security-Policy" in text
    # 3 classes: top-5 says nothing and is left out; top-1 columns get chance (1/3).
    assert "video_top5" not in text and "video_top1@clips=1x1crop" in text
    assert 'data-value="0.3333333333333333"' in text


def test_missing_parts_say_which_phase_writes_them(workspace, tmp_path):
    partial = str(tmp_path / "partial")
    shutil.copytree(os.path.join(workspace, "examples"), os.path.join(partial, "examples"))
    html = report_page.report_page(partial, os.path.join(partial, "examples"))
    assert "written by the sample phase (stfusion_tf.train --phases=sample)" in html
    assert "written by the evaluate phase" in html and "written by the export phase" in html
    assert "Videos per split and class" in html
    no_records = report_page.report_page(workspace, str(tmp_path / "nowhere"))
    assert "written by pipelines.make_tfrecords" in no_records


def test_the_page_loads_in_headless_chromium_with_its_charts_and_sortable_tables(page):
    with browser.Browser(browser.chromium_or_skip()) as chromium:
        chromium.open(f"file://{page}")
        assert chromium.errors == []
        images = chromium.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        assert [(alt, ok) for alt, ok, _ in images] == [
            ("contact sheet", True),
            ("marginal probabilities", True),
            ("accuracy vs MACs", True),
        ]
        assert [width for _, _, width in images][1:] == [40, 30]  # the PNGs themselves
        rows = chromium.evaluate(
            "Array.from(document.querySelectorAll('table.sortable')).map(t => t.tBodies[0].rows.length)"
        )
        # classes x splits, splits, strategies, results (chance + 2 networks)
        assert rows == [3, 2, 3, 3]
        assert chromium.evaluate(
            "Array.from(document.querySelectorAll('td')).some(td => td.textContent === "
            + json.dumps(HOSTILE)
            + ")"
        )

        def column_after_click(header: str) -> list[str]:
            return chromium.evaluate(
                f"""(() => {{
                  const table = document.querySelectorAll('table.sortable')[2];
                  const ths = Array.from(table.tHead.rows[0].cells);
                  const th = ths.find(h => h.textContent === {json.dumps(header)});
                  th.click();
                  return Array.from(table.tBodies[0].rows).map(r => r.cells[th.cellIndex].textContent);
                }})()"""
            )

        # By value, not as text ("11060000" < "9000000"); a second click reverses.
        assert column_after_click("macs") == ["9000000", "10440000", "11060000"]
        assert column_after_click("macs") == ["11060000", "10440000", "9000000"]
        assert column_after_click("strategy") == ["s,s|s", "st,-|t", "t,t|t"]
        assert column_after_click("holdout_top1") == ["0.500", "0.750", "1.000"]
        assert chromium.errors == []


def test_the_command_writes_the_page_and_refuses_a_folder_without_a_run(workspace, tmp_path, capfd):
    ok = commands.run(capfd, "stfusion_tf.report_page", f"--workspace={workspace}")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"Wrote {os.path.join(workspace, 'report.html')}"
    refused = commands.run(capfd, "stfusion_tf.report_page", f"--workspace={tmp_path}")
    assert refused.returncode == 2 and refused.stdout == ""
    errors = [line for line in refused.stderr.splitlines() if "error:" in line]
    assert errors == [
        f"stfusion_tf.report_page: error: {str(tmp_path)!r} holds no run (no train/ folder): "
        "give the --workspace of stfusion_tf.train."
    ]
    assert os.listdir(tmp_path) == []


def test_without_chromium_a_developer_is_told_make_browser_and_ci_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="run `make browser`"):
        browser.chromium_or_skip()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        browser.chromium_or_skip()
