"""`python -m stfusion_tf.describe --backbone=...`: per-strategy and per-stage costs are flops.py's
(the command in the test's process: tests/commands.py)."""

import json
import re

from stfusion_tf.flops import layer_costs, total_costs
from stfusion_tf.models.backbones import build_backbone
from stfusion_tf.network_description import BACKBONE_STRATEGIES, describe_backbone
from tests import commands

CLIP = (4, 32, 32, 3)
TINY = dict(num_classes=5, blocks=(1, 1, 1, 1), width_multiplier=0.125, input_frames=4)


def test_cli_reports_the_counted_totals(tmp_path, capfd):
    out_json = tmp_path / "costs.json"
    result = commands.run(
        capfd, "stfusion_tf.describe", "--backbone=resnet50", "--strategy=ST",
        "--backbone_blocks=1,1,1,1", "--backbone_width_multiplier=0.125", "--num_frames=4",
        "--crop_size=32", "--num_classes=5", f"--output_json={out_json}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(out_json.read_text())
    model = build_backbone("resnet50", "ST", input_size=32, **TINY)
    totals = total_costs(layer_costs(model, CLIP))
    row = summary["strategies"][0]
    assert (row["params"], row["macs"], row["flops"]) == (
        totals.params,
        totals.macs,
        2 * totals.macs,
    )
    assert re.search(rf"^ST: Total parameters: {totals.params:,} trainable", result.stdout, re.M)
    assert re.search(r"^stage4\s+1x1x1x256\s", result.stdout, re.M) is None  # T stays 4
    assert re.search(r"^stage4\s+4x1x1x256\s", result.stdout, re.M)


def test_every_strategy_without_strategy():
    _, summary = describe_backbone("resnet50", BACKBONE_STRATEGIES, CLIP, input_size=32, **TINY)
    by_name = {r["strategy"]: r for r in summary["strategies"]}
    assert list(by_name) == ["S", "ST", "S+ST", "opt_something", "opt_kinetics"]
    model = build_backbone("resnet50", "S+ST", input_size=32, **TINY)
    assert by_name["S+ST"]["macs"] == total_costs(layer_costs(model, CLIP)).macs
    # S+ST holds both branches: it costs the most; S the least. Per unit, T costs 3x S.
    s, st, both = (by_name[u]["macs"] for u in ("S", "ST", "S+ST"))
    assert s < st < both and (both - st) * 3 == both - s


def test_one_strategy_is_broken_down_per_stage():
    text, summary = describe_backbone(
        "mobilenet_v2", ("opt_kinetics",), CLIP, num_classes=5, width_multiplier=0.35
    )
    parts = [p["part"] for p in summary["parts"]]
    assert parts == ["stem", *(f"stage{k}" for k in range(1, 8)), "head"]
    assert sum(p["macs"] for p in summary["parts"]) == summary["strategies"][0]["macs"]
    assert sum(p["params"] for p in summary["parts"]) == summary["strategies"][0]["params"]
    assert "strategy opt_kinetics: st|s,st|s,st,s|st,s,st,s|st,t,t|t,t,t|t" in text
    _, per_block = describe_backbone(
        "mobilenet_v2", ("S",), CLIP, per_layer=True, num_classes=5, width_multiplier=0.35
    )
    assert [p["part"] for p in per_block["parts"]][:3] == ["stem", "expanded_conv", "block_1"]
