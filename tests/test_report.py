"""The end-of-run summary: chance, the all-the-way strategies and the searched one, each with
its test top-1 and MACs from results.json, and the artifacts a workspace holds."""

from __future__ import annotations

import json

from stfusion_tf import report


def _entry(strategy, top1, macs, weights="fine-tuned pruned network"):
    return {
        "strategy": strategy,
        "weights": weights,
        "metrics": {"video_top1@clips=4x1crop": top1, "video_top1@clips=1x1crop": 0.0},
        "macs": macs,
    }


RESULTS = {
    "protocol": "clips=4x1crop",
    "labels": ["down", "left", "right", "up", "still"],
    "models": {
        "opt_template": _entry("st,-|t", 0.5, 9_000_000, "search template"),
        "opt_finetuned": _entry("st,-|t", 1.0, 9_000_000),
        "S+ST": _entry("st,st|st", 0.975, 11_370_000),
        "S": _entry("s,s|s", 0.625, 10_440_000),
        "ST": _entry("t,t|t", 0.95, 11_060_000),
    },
}


def test_rows_are_chance_then_s_st_s_plus_st_then_searched_at_the_runs_protocol():
    rows = report.summary_rows(RESULTS)
    assert [(r["name"], r["strategy"], r["top1"], r["macs"]) for r in rows] == [
        ("chance", "", 0.2, None),  # 1 / 5 classes
        ("S all the way", "s,s|s", 0.625, 10_440_000),
        ("ST all the way", "t,t|t", 0.95, 11_060_000),
        ("S+ST all the way", "st,st|st", 0.975, 11_370_000),
        ("searched", "st,-|t", 1.0, 9_000_000),  # fine-tuned, not the template's 0.5
    ]


def test_the_table_prints_top1_and_millions_of_macs_one_line_a_row():
    lines = report.format_summary(RESULTS).splitlines()
    assert lines[0] == "Test split: video_top1@clips=4x1crop (5 classes)"
    assert len(lines) == 2 + 5
    assert lines[2].split() == ["chance", "0.200"]
    assert lines[3].split()[:6] == ["S", "all", "the", "way", "s,s|s", "0.625"]
    assert lines[3].split()[6] == "10.44"
    assert lines[-1].split()[:4] == ["searched", "st,-|t", "1.000", "9.00"]


def test_a_workspace_summary_lists_only_the_artifacts_it_holds(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "marginals.png").write_bytes(b"png")
    export = tmp_path / "train" / "export"
    export.mkdir(parents=True)
    (tmp_path / "serving" / "stfusion" / "1").mkdir(parents=True)
    (export / "DONE").write_text(json.dumps({"path": str(tmp_path / "serving/stfusion/1")}))
    text = report.workspace_summary(str(tmp_path))
    assert text.startswith("Test split: video_top1@clips=4x1crop")
    listed = [line.split()[-1] for line in text.split("Artifacts:\n")[1].splitlines()]
    assert listed == [
        str(tmp_path / "search" / "marginals.png"),
        str(tmp_path / "results.json"),
        str(tmp_path / "train"),
        str(tmp_path / "serving" / "stfusion" / "1"),
    ]
    assert "pareto.png" not in text  # not written: not listed


def test_an_unevaluated_workspace_has_no_table(tmp_path):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "best_strategy.json").write_text("{}")
    assert report.workspace_summary(str(tmp_path)).splitlines() == [
        "Artifacts:",
        f"  best strategy  {tmp_path / 'search' / 'best_strategy.json'}",
    ]
