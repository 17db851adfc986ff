"""`python -m stfusion_tf.describe`: the printed totals are flops.py's, flags and flagfile work;
a checkpoint is described from its run metadata (a run's workspace: tests/test_train_cli.py, on
its finished run). The command runs in the test's process (tests/commands.py)."""

import dataclasses
import json
import re

import pytest

from stfusion_tf import checkpoints, run_description
from stfusion_tf.flops import layer_costs, total_costs
from stfusion_tf.models.template import TemplateConfig, build_network
from stfusion_tf.preprocessing import PreprocessingSpec
from stfusion_tf.strategy import FusionStrategy
from tests import commands

TINY_FLAGS = [
    "--blocks=2,2", "--growth_rate=8", "--stem_filters=16", "--num_classes=5", "--num_frames=4",
    "--crop_size=32",
]  # fmt: skip
# Flags of stfusion_tf.train that describe does not use: a training flagfile holds them.
TRAINING_ONLY_FLAGS = ["--phases=warmup,search", "--noflip", "--stride=2", "--length_scale=0.05",
                       "--distribution=one_device", "--records_dir=/nowhere"]  # fmt: skip
TINY = TemplateConfig(
    num_classes=5, blocks=(2, 2), growth_rate=8, stem_filters=16, input_frames=4, input_size=32
)
CLIP = (4, 32, 32, 3)


def _number(pattern, text):
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return int(match.group(1).replace(",", ""))


def test_strategy_totals_match_flops(tmp_path, capfd):
    strategy = "st,t,-|s,st"
    out_json = tmp_path / "costs.json"
    old_names = [
        f.replace("--num_frames", "--frames").replace("--crop_size", "--size") for f in TINY_FLAGS
    ]
    result = commands.run(
        capfd,
        "stfusion_tf.describe",
        *old_names,
        f"--strategy={strategy}",
        "--per_layer",
        f"--output_json={out_json}",
    )
    assert result.returncode == 0, result.stderr
    # The old names still work, with a warning each.
    assert "--frames is deprecated: use --num_frames." in result.stderr
    assert "--size is deprecated: use --crop_size." in result.stderr
    text = result.stdout
    pruned = total_costs(layer_costs(build_network(TINY, FusionStrategy.parse(strategy)), CLIP))
    template = total_costs(layer_costs(build_network(TINY), CLIP))
    assert _number(r"Total MACs: ([\d,]+)", text) == pruned.macs
    assert _number(r"Total parameters: ([\d,]+) trainable", text) == pruned.params
    assert _number(r"Template MACs: ([\d,]+)", text) == template.macs
    assert f"{100 * pruned.macs / template.macs:.1f}% of the template" in text
    # One row per fusion layer, with its unit.
    assert re.search(r"^transition1\s+none\s", text, re.M)
    assert re.search(r"^block2_layer2\s+S\+ST\s", text, re.M)
    summary = json.loads(out_json.read_text())
    assert (
        summary["totals"]["macs"] == pruned.macs and summary["totals"]["flops"] == 2 * pruned.macs
    )
    assert sum(p["macs"] for p in summary["parts"]) == pruned.macs
    assert [p["part"] for p in summary["parts"]][:2] == ["stem", "block1_layer1"]


def test_template_by_training_flagfile_and_all_the_way_name(tmp_path, capfd):
    """A training flagfile describes the network it trains: describe ignores its other flags."""
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text("\n".join(TINY_FLAGS + TRAINING_ONLY_FLAGS + ["--strategy=ST"]) + "\n")
    result = commands.run(capfd, "stfusion_tf.describe", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr
    st = FusionStrategy.all_the_way("ST", (3, 2))
    pruned = total_costs(layer_costs(build_network(TINY, st), CLIP))
    assert _number(r"Total MACs: ([\d,]+)", result.stdout) == pruned.macs
    assert "pruned network of strategy t,t,t|t,t" in result.stdout
    assert re.search(r"^block1\s+t,t,t\s", result.stdout, re.M)


def test_bad_strategy_is_a_usage_error(capfd):
    # The parse errors themselves are tested in test_strategy.py.
    result = commands.run(capfd, "stfusion_tf.describe", *TINY_FLAGS, "--strategy=s,s|t")
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert re.match(
        r"stfusion_tf.describe: error: --strategy: Strategy 's,s\|t' has block sizes \(2, 1\)", line
    )


def test_a_checkpoint_is_described_from_its_metadata(tmp_path):
    """The network a checkpoint holds, per fusion layer, on the eval clip of its spec."""
    config = dataclasses.replace(TINY, input_size=None)  # as training builds it: any crop
    strategy = FusionStrategy.parse("st,t,-|s,st")
    model = build_network(config, strategy)
    spec = PreprocessingSpec(
        num_frames=4, crop_size=32, train_short_sides=None, eval_short_side=40, eval_crop_size=36
    )
    metadata = checkpoints.make_metadata(
        spec=spec, labels=["a", "b", "c", "d", "e"], network_config=config.to_dict(),
        strategy=str(strategy), fingerprint=None, phase="finetune",
    )  # fmt: skip
    prefix = checkpoints.make_checkpoint(model, metadata).save(str(tmp_path / "ckpt"))
    run = run_description.of_checkpoint(str(tmp_path))
    assert (run.kind, run.strategy, run.clip_shape) == ("template", strategy, (4, 36, 36, 3))
    text, summary = run_description.describe_run(run)
    expected = total_costs(layer_costs(model, (4, 36, 36, 3)))
    assert summary["totals"]["macs"] == expected.macs and expected.macs != 0
    assert _number(r"Total MACs: ([\d,]+)", text) == expected.macs
    assert _number(r"Total parameters: ([\d,]+) trainable", text) == expected.params
    assert text.startswith(f"checkpoint {prefix} (phase finetune): strategy st,t,-|s,st pruned")
    assert re.search(r"^transition1\s+none\s", text, re.M)  # per fusion layer by default
    assert summary["run"] == {"facts": [text.splitlines()[0]], "export": None}


def test_a_folder_without_a_run_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no run: it has no train/run_config.json"):
        run_description.of_workspace(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        run_description.of_checkpoint(str(tmp_path))
