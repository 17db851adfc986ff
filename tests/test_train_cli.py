"""The training entry point (python -m stfusion_tf.train) on real records of the synthetic dataset:
all phases end to end with consistent artifacts, finished phases not redone, kill -9 and restart,
and errors that stop a run before any training."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from tensorboard import context as tensorboard_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

from stfusion_tf import checkpoints, data, scoring, train, train_command, training
from tests import browser, console_output, record_fixtures
from tfrecords_tools import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A template and clips small enough for a CPU step of ~0.1 s (blocks of one layer, 4 frames).
TINY_FLAGS = """
--blocks=1,1
--growth_rate=4
--bottleneck_factor=2
--stem_filters=4
--num_frames=4
--stride=2
--crop_size=24
--train_short_sides=28,32
--eval_short_side=24
--eval_crop_size=24
--noflip
--batch_size=4
--warmup_epochs=2
--search_epochs=2
--finetune_epochs=1
--learning_rate=0.05
--lr_decay_epochs=2
--length_scale=0.01
--logit_lr_multiplier=20
--num_strategies=4
--holdout_num_clips=1
--cache_holdout
--test_num_clips=2
--evaluate_all_the_way
--eval_batch_size=8
--shuffle_buffer=16
--distribution=one_device
--jit_compile=false
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """4 classes: train 4 videos each (1 carved into holdout), test 1 each; real H.264 videos
    converted by the Beam job (``folder`` layout with train/ and test/ sub-folders)."""
    output = record_fixtures.convert_tiny_dataset(str(tmp_path_factory.mktemp("data")))
    counts = {split: data.num_examples(output, split) for split in ("train", "holdout", "test")}
    assert counts == {"train": 12, "holdout": 4, "test": 4}
    return output


@pytest.fixture(scope="module")
def flagfile(tmp_path_factory):
    path = tmp_path_factory.mktemp("configs") / "tiny.cfg"
    path.write_text(TINY_FLAGS)
    return str(path)


def _flags(*args) -> flags.FlagValues:
    values = flags.FlagValues()
    train_command.define_flags(values)
    values(["train", *args])
    return values


@pytest.fixture(scope="module")
def finished_run(records, flagfile, tmp_path_factory):
    """All phases run once, in-process (the all-the-way strategies evaluated as pruned from the
    template; test_study's --finetune run fine-tunes them)."""
    workspace = str(tmp_path_factory.mktemp("workspace"))
    summaries = train.run(
        _flags(
            f"--flagfile={flagfile}",
            f"--workspace={workspace}",
            f"--records_dir={records}",
        )
    )
    return workspace, summaries


def _read_logits(checkpoint_dir):
    """Every drop logit saved in the latest checkpoint, read from the raw file by name
    (``weights/<layer>/drop_logit``: checkpoints keep weights under their Keras paths)."""
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    reader = tf.train.load_checkpoint(latest)
    stored = checkpoints.stored_weights(latest)
    keys = [key for path, (key, _) in stored.items() if path.endswith("/drop_logit")]
    return np.array(sorted(float(reader.get_tensor(key)) for key in keys))


@pytest.mark.slow
def test_all_phases_write_consistent_artifacts(finished_run, records):
    workspace, summaries = finished_run
    for phase in ("warmup", "search", "finetune"):
        phase_dir = os.path.join(workspace, "train", phase)
        assert os.path.exists(os.path.join(phase_dir, "DONE")), phase
        assert tf.train.latest_checkpoint(os.path.join(phase_dir, "checkpoints")), phase
        assert any(n.startswith("events.out.tfevents") for n in os.listdir(f"{phase_dir}/logs"))
        history = files.read_jsonl(os.path.join(phase_dir, "logs", "history.jsonl"))
        assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
        assert all(np.isfinite(h["loss"]) for h in history)
    search_dir = os.path.join(workspace, "search")

    # best_strategy.json is the top row of strategies.csv; the S, ST, S+ST baselines end it.
    with open(os.path.join(search_dir, "strategies.csv")) as f:
        rows = list(csv.DictReader(f))
    best, record = scoring.read_best_strategy(search_dir)
    assert rows[0]["strategy"] == str(best) == record["strategy"]
    sampled = [r for r in rows if r["kind"] == "sampled"]
    assert 1 <= len(sampled) <= 4
    assert [r["rank"] for r in sampled] == [str(i) for i in range(1, len(sampled) + 1)]
    baselines = rows[len(sampled) :]
    assert [(r["kind"], r["rank"]) for r in baselines] == [("all_the_way", "")] * 3
    assert [r["strategy"] for r in baselines] == [
        record["all_the_way"][u]["strategy"] for u in ("S", "ST", "S+ST")
    ]
    assert os.path.getsize(os.path.join(search_dir, "marginals.png")) > 1000
    assert os.path.getsize(os.path.join(search_dir, "pareto.png")) > 1000

    # probabilities.json holds 1 - p of the logits in the search checkpoint.
    with open(os.path.join(search_dir, "probabilities.json")) as f:
        table = json.load(f)
    p = np.array(
        [[g["s_branch"], g["t_branch"]] for g in (x["drop_probability"] for x in table["layers"])]
    )
    logits = _read_logits(os.path.join(workspace, "train", "search", "checkpoints"))
    assert len(logits) == p.size == 2 * 3  # fusion layers: 1 + transition + 1, two gates each
    np.testing.assert_allclose(np.sort(p.reshape(-1)), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    for layer, (p_s, p_t) in zip(table["layers"], p, strict=True):
        marginal = layer["marginal"]
        assert all(0 <= v <= 1 for v in marginal.values())
        assert sum(marginal.values()) == pytest.approx(1.0)
        assert marginal["S"] == pytest.approx((1 - p_s) * p_t)
        assert marginal["ST"] == pytest.approx(p_s * (1 - p_t))
        assert marginal["S+ST"] == pytest.approx((1 - p_s) * (1 - p_t))

    # The last logged drop probabilities are the ones the search ended with, and they moved.
    logged = files.read_jsonl(
        os.path.join(workspace, "train", "search", "logs", "drop_probabilities.jsonl")
    )
    assert [x["epoch"] for x in logged] == [0, 1, 2]
    np.testing.assert_allclose(logged[-1]["drop_probability"], p, rtol=1e-6)
    np.testing.assert_allclose(logged[0]["drop_probability"], 0.1, rtol=1e-5)
    assert np.abs(np.asarray(logged[-1]["drop_probability"]) - 0.1).max() > 0.01

    # TensorBoard: losses per phase, drop probabilities per gate and as histograms per branch.
    tags = set()
    for path in tf.io.gfile.glob(f"{workspace}/train/search/logs/events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {
        "loss",
        "kl",
        "drop_probability/s_branch",
        "drop_probability/t_branch",
        "drop_probability/block1_layer1_s",
        "drop_probability/transition1_t",
    } <= tags

    # results.json: the fine-tuned best and the all-the-way baselines, named with the protocol.
    with open(os.path.join(workspace, "results.json")) as f:
        results = json.load(f)
    assert results["split"] == "test" and results["protocol"] == "clips=2x1crop"
    assert set(results["models"]) == {"opt_finetuned", "opt_template", "S", "ST", "S+ST"}
    assert results["models"]["opt_finetuned"]["strategy"] == str(best)
    assert "fine-tuned" in results["models"]["opt_finetuned"]["weights"]
    # Without --finetune_all_the_way, the all-the-way strategies are the template's, pruned.
    for unit in ("S", "ST", "S+ST"):
        assert results["models"][unit]["weights"] == "search template, pruned, not fine-tuned"
        assert results["models"][unit]["strategy"] == record["all_the_way"][unit]["strategy"]
    assert json.load(open(os.path.join(workspace, "train", "finetune", "DONE")))["step"] == 3
    for entry in results["models"].values():
        assert entry["num_videos"] == 4
        # Multi-view and single-view reported together, each metric named with its protocol.
        assert entry["protocols"] == ["clips=2x1crop", "clips=1x1crop"]
        assert set(entry["metrics"]) == {
            f"{level}_{m}@clips={views}"
            for level in ("clip", "video")
            for m in ("top1", "top5")
            for views in ("2x1crop", "1x1crop")
        } | {"clip_loss@clips=2x1crop", "clip_loss@clips=1x1crop"}
    assert summaries["finetune"]["strategy"] == str(best)
    # The data, the labels and the preprocessing the numbers were measured with.
    with open(os.path.join(records, "fingerprint.json")) as f:
        assert results["fingerprint"] == json.load(f)
    assert results["labels"] == data.class_names(records)
    assert results["preprocessing"]["jpeg_quality"] == 90
    # Every checkpoint says the same about itself.
    for phase in ("warmup", "search", "finetune"):
        metadata = checkpoints.read_metadata(os.path.join(workspace, "train", phase))
        assert metadata["labels"] == results["labels"]
        assert metadata["fingerprint"] == results["fingerprint"]
        assert metadata["preprocessing"] == results["preprocessing"]
        assert metadata["phase"] == phase
    assert checkpoints.read_metadata(os.path.join(workspace, "train", "finetune"))["network"][
        "strategy"
    ] == str(best)


@pytest.mark.slow
def test_tensorboard_shows_one_run_per_phase_with_the_same_tags(finished_run):
    """What ``tensorboard --logdir <workspace>/train`` shows, read by TensorBoard's own data
    provider: the phases' runs share the tag ``loss`` (overlaid in one chart), the search's run
    has a scalar per gate and the marginal-probability chart as an image at its last epoch."""
    workspace, _ = finished_run
    logdir = os.path.join(workspace, "train")
    multiplexer = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    ctx = tensorboard_context.RequestContext()
    scalars = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=1000)
    runs = {"warmup/logs", "search/logs", "finetune/logs"}
    assert runs <= set(scalars)
    for run in runs:
        assert {"loss", "cross_entropy", "kl", "train_top1", "learning_rate"} <= set(scalars[run])
        assert all(0 <= d.value <= 1 for d in scalars[run]["input_wait_fraction"])
        assert not any(tag.startswith(("warmup/", "search/", "finetune/")) for tag in scalars[run])
    history = files.read_jsonl(os.path.join(logdir, "warmup", "logs", "history.jsonl"))
    assert [(d.step, d.value) for d in scalars["warmup/logs"]["loss"]] == [
        (h["epoch"], pytest.approx(h["loss"], rel=1e-6)) for h in history
    ]
    assert len(scalars["search/logs"]["loss"]) == 2 and len(scalars["finetune/logs"]["loss"]) == 1
    gates = [t for t in scalars["search/logs"] if t.startswith("drop_probability/")]
    assert len(gates) == 2 * 3 and "drop_probability/transition1_t" in gates
    assert not any(t.startswith("drop_probability/") for t in scalars["warmup/logs"])

    images = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name="images", downsample=10
    )
    assert list(images) == ["search/logs"]
    (chart,) = images["search/logs"]["marginal_probability"]
    assert chart.step == 2  # the search's last epoch
    png = provider.read_blob(ctx, blob_key=chart.values[2].blob_key)
    with open(os.path.join(workspace, "search", "marginals.png"), "rb") as f:
        assert png == f.read()


@pytest.mark.slow
def test_the_run_report_opens_in_chromium_with_the_runs_charts_and_tables(finished_run):
    """Training wrote report.html; it loads in headless Chromium without an error and shows the
    contact sheet, both search charts and every table with the run's rows."""
    workspace, _ = finished_run
    with open(os.path.join(workspace, "search", "strategies.csv")) as f:
        strategies = len(list(csv.DictReader(f)))
    with browser.Browser(browser.chromium_or_skip()) as chromium:
        chromium.open(f"file://{os.path.join(workspace, 'report.html')}")
        assert chromium.errors == []
        images = chromium.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])"
        )
        assert images == [
            ["contact sheet", True],
            ["marginal probabilities", True],
            ["accuracy vs MACs", True],
        ]
        rows = chromium.evaluate(
            "Array.from(document.querySelectorAll('table.sortable'), t => t.tBodies[0].rows.length)"
        )
        # 4 classes x splits; train, holdout, test; the scored strategies; chance + 5 networks.
        assert rows == [4, 3, strategies, 1 + 5]
        best, _ = scoring.read_best_strategy(os.path.join(workspace, "search"))
        served = chromium.evaluate(
            "Array.from(document.querySelectorAll('th'), th => [th.textContent, "
            "th.nextElementSibling]).filter(([name, td]) => name === 'strategy' && td && "
            "td.tagName === 'TD').map(([_, td]) => td.textContent)"
        )
        assert served == [str(best)]  # the model card's


@pytest.mark.slow
def test_describe_says_what_the_run_built(finished_run, flagfile, tmp_path, capfd):
    """``describe --workspace`` (here in a flagfile, as a training flagfile may hold it): the
    best strategy of ``search/best_strategy.json``, fine-tuned, per fusion layer, on the run's
    eval clip; its totals are the sample phase's count and the export's model card's. Before the
    fine-tune, the best strategy pruned from the template of ``run_config.json``. The command runs
    in the test's process (tests/commands.py)."""
    import re

    from stfusion_tf import run_description
    from stfusion_tf.models.template import fusion_layer_names
    from stfusion_tf.preprocessing import PreprocessingSpec
    from tests import commands

    workspace, _ = finished_run
    best, record = scoring.read_best_strategy(os.path.join(workspace, "search"))
    with open(os.path.join(workspace, "train", "run_config.json")) as f:
        run_config = json.load(f)
    described = tmp_path / "describe.cfg"
    described.write_text(f"--flagfile={flagfile}\n--workspace={workspace}\n")
    result = commands.run(
        capfd, "stfusion_tf.describe", f"--flagfile={described}",
        f"--output_json={tmp_path / 'described.json'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    summary = json.loads((tmp_path / "described.json").read_text())
    assert f"best strategy: {best} (" in text and "\nfine-tuned: checkpoint " in text
    assert summary["strategy"] == str(best)
    assert summary["config"]["blocks"] == run_config["template_config"]["blocks"]
    spec = PreprocessingSpec.from_dict(run_config["preprocessing"])
    assert summary["clip_shape"] == list(spec.eval_clip_shape)
    printed = re.search(r"Total MACs: ([\d,]+)", text).group(1).replace(",", "")
    assert int(printed) == summary["totals"]["macs"] == record["scores"]["macs"]
    assert summary["totals"]["params"] == record["scores"]["params"]
    units = {part["part"]: part["units"] for part in summary["parts"]}
    names = fusion_layer_names(run_description.of_workspace(workspace).config)
    assert [units[name] for name in names] == list(best.units)  # one row per fusion layer
    (export_line,) = [line for line in text.splitlines() if line.startswith("export: ")]
    assert export_line.endswith(": the network above")
    assert f"{summary['totals']['macs']:,} MACs" in export_line

    before = tmp_path / "before_finetune"
    shutil.copytree(workspace, before)
    for phase in ("finetune", "export"):
        shutil.rmtree(before / "train" / phase)
    run = run_description.of_workspace(str(before))
    assert (run.strategy, run.export) == (best, None)
    assert run.facts[-1].startswith("not fine-tuned yet") and str(best) in run.facts[-1]


@pytest.mark.slow
def test_a_finished_run_is_not_redone(finished_run, records, flagfile, capsys):
    workspace, _ = finished_run
    markers = [
        os.path.join(workspace, "train", p, "DONE") for p in ("warmup", "search", "finetune")
    ] + [
        os.path.join(workspace, "search", "best_strategy.json"),
        f"{workspace}/results.json",
        os.path.join(workspace, "train", "export", "DONE"),
    ]
    before = {m: os.path.getmtime(m) for m in markers}
    summaries = train.run(
        _flags(f"--flagfile={flagfile}", f"--workspace={workspace}", f"--records_dir={records}")
    )
    assert all(s is None for s in summaries.values())
    assert {m: os.path.getmtime(m) for m in markers} == before
    assert capsys.readouterr().out.count("skipped") == 6
    # The artifacts' paths end every run, quiet or not, whichever phases it ran.
    train.run(
        _flags(
            f"--flagfile={flagfile}",
            f"--workspace={workspace}",
            f"--records_dir={records}",
            "--phases=evaluate",
            "--noverbose",
        )
    )
    out = capsys.readouterr().out
    assert "skipped" not in out and "Artifacts:" in out
    for name in ("results.json", "report.html", os.path.join("search", "marginals.png")):
        assert os.path.join(workspace, name) in out


@pytest.mark.slow
def test_one_phase_runs_alone_on_a_prepared_workspace(finished_run, records, flagfile, tmp_path):
    """The phase table is all a phase needs: on a copy of a finished workspace without its
    results, the evaluate phase alone writes the results the whole run wrote; and the
    prerequisite check reads the same table's markers."""
    workspace = tmp_path / "ws"
    shutil.copytree(finished_run[0], workspace)
    os.remove(workspace / "results.json")
    base = (f"--flagfile={flagfile}", f"--workspace={workspace}", f"--records_dir={records}")
    ctx, phases, settings = train.build_context(_flags(*base, "--phases=evaluate"))
    assert phases == ["evaluate"]
    written = training.PHASE_TABLE["evaluate"].run(ctx, settings)
    assert training.PHASE_TABLE["evaluate"].marker(ctx) == str(workspace / "results.json")
    with open(os.path.join(finished_run[0], "results.json")) as f:
        expected = json.load(f)
    with open(workspace / "results.json") as f:
        assert json.load(f) == json.loads(json.dumps(written))
    for results in (written, expected):
        results.pop("seconds")
    assert json.loads(json.dumps(written)) == expected
    os.remove(training.PHASE_TABLE["search"].marker(ctx))
    assert "needs phase 'search'" in _setup_error(*base, "--phases=sample")
    assert training.splits_needed(["search"]) == ["train", "holdout"]


def _command(flagfile, workspace, records, *extra):
    return [
        sys.executable,
        "-m",
        "stfusion_tf.train",
        f"--flagfile={flagfile}",
        f"--workspace={workspace}",
        f"--records_dir={records}",
        *extra,
    ]


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    return env


def _setup_error(*args) -> str:
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        train.build_context(_flags(*args))
    return str(error.value)


def test_a_missing_split_stops_before_training(records, flagfile, tmp_path):
    partial = tmp_path / "examples"
    shutil.copytree(records, partial)
    for name in os.listdir(partial):
        if name.startswith("test"):
            os.remove(partial / name)
    workspace = tmp_path / "workspace"
    message = _setup_error(
        f"--flagfile={flagfile}", f"--workspace={workspace}", f"--records_dir={partial}"
    )
    assert "'test'" in message and "make_tfrecords" in message
    assert not (workspace / "train").exists()


def test_an_empty_split_stops_before_training(records, flagfile, tmp_path):
    partial = tmp_path / "examples"
    shutil.copytree(records, partial)
    manifest = partial / "holdout.manifest.json"
    content = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**content, "num_examples": 0}))
    message = _setup_error(
        f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={partial}"
    )
    assert "'holdout' has no examples" in message


def test_a_label_map_mismatch_between_splits_stops_before_training(records, flagfile, tmp_path):
    other = tmp_path / "examples"
    shutil.copytree(records, other)
    manifest = other / "test.manifest.json"
    content = json.loads(manifest.read_text())
    content["num_classes"] = 5
    content["examples_per_class"]["move_sideways"] = 1
    manifest.write_text(json.dumps(content))
    message = _setup_error(
        f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={other}"
    )
    assert "does not match the label map" in message and "move_sideways" in message


def test_flag_and_phase_order_errors_name_what_to_do(records, flagfile, tmp_path):
    base = (f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={records}")
    assert "phases" in _setup_error(*base, "--phases=warmup,serach")
    assert "needs phase 'search'" in _setup_error(*base, "--phases=sample")
    for bad in ("--batch_size=0", "--lr_decay_epochs=2,x", "--learning_rate=-1"):
        # Refused as the flags are parsed (test_train_inputs has one case per kind of value).
        with pytest.raises(flags.IllegalFlagValueError, match=bad.split("=")[0]):
            _flags(*base, bad)
    with pytest.raises(flags.IllegalFlagValueError):
        _flags(*base, "--distribution=tpu")
    assert "disagree" in _setup_error(*base, "--strategy=mirrored", "--distribution=one_device")


def test_the_old_strategy_flag_still_chooses_the_distribution(records, flagfile, tmp_path, capsys):
    base = (f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={records}")
    ctx, _, _ = train.build_context(_flags(*base, "--strategy=one_device"))
    assert ctx.distribution.num_replicas_in_sync == 1
    assert "--strategy is deprecated: use --distribution" in capsys.readouterr().err


def test_a_restart_with_another_network_is_refused(records, flagfile, tmp_path):
    base = (f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={records}")
    train.build_context(_flags(*base))
    message = _setup_error(*base, "--growth_rate=8")
    assert "growth_rate: 4 -> 8" in message and "new --workspace" in message
    assert "crop_size: 24 -> 28" in _setup_error(*base, "--crop_size=28")
    # What does not shape the weights may change (a new search from the same warm-up).
    train.build_context(_flags(*base, "--length_scale=0.5", "--synchronized_batch_norm=true"))


@pytest.mark.parametrize(
    "name, length_scale, epochs, batch, flip",
    [
        ("something_v1", 250, 90, 32, False),
        ("something_v2", 50, 90, 32, False),
        ("kinetics400", 10, 110, 64, True),
        ("ucf101", 50, 90, 32, True),
    ],
)
def test_paper_recipes_parse_with_the_papers_numbers(name, length_scale, epochs, batch, flip):
    values = _flags(f"--flagfile={os.path.join(ROOT, 'configs', f'{name}.cfg')}")
    assert values.length_scale == length_scale
    assert values.search_epochs == epochs and values.warmup_epochs == 50
    assert values.batch_size == batch and values.flip == flip
    assert values.init_drop_probability == 0.1 and values.temperature == 0.2
    assert values.num_strategies == 100
    assert values.blocks == ["6", "12", "24", "16"]
    assert values.lr_decay_epochs == (["40", "80"] if name == "kinetics400" else ["40", "60", "80"])
    assert values.learning_rate == (0.01 if name == "kinetics400" else 0.005)


def test_demo_config_parses():
    values = _flags(f"--flagfile={os.path.join(ROOT, 'configs', 'demo_cpu.cfg')}")
    assert values.phases == list(training.PHASES)  # the whole flow, export included
    assert not values.flip  # the synthetic classes name directions


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_the_command_line_reports_setup_errors_without_a_traceback(records, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "stfusion_tf.train", f"--records_dir={records}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "stfusion_tf.train: error: --workspace is required" in finished.stderr
    assert "Traceback" not in finished.stderr
    # TensorFlow was imported (the check runs with it): none of its start-up lines show.
    assert console_output.noise(finished.stderr + finished.stdout) == []


def test_a_missing_holdout_split_says_how_to_carve_one(records, flagfile, tmp_path):
    partial = tmp_path / "examples"
    shutil.copytree(records, partial)
    for name in os.listdir(partial):
        if name.startswith("holdout"):
            os.remove(partial / name)
    message = _setup_error(
        f"--flagfile={flagfile}", f"--workspace={tmp_path / 'ws'}", f"--records_dir={partial}"
    )
    assert "--holdout_fraction" in message


@pytest.mark.slow
def test_records_with_another_label_order_are_refused_by_the_checkpoints(
    finished_run, records, flagfile, tmp_path
):
    workspace = tmp_path / "ws"
    shutil.copytree(finished_run[0], workspace)
    other = tmp_path / "examples"
    shutil.copytree(records, other)
    names = data.class_names(records)
    swapped = [names[1], names[0], *names[2:]]
    (other / "label_map.txt").write_text("".join(f"{n}\n" for n in swapped))
    # Refused before the phase, naming the checkpoint (the phase would refuse it too).
    message = _setup_error(
        f"--flagfile={flagfile}",
        f"--workspace={workspace}",
        f"--records_dir={other}",
        "--phases=evaluate",
    )
    assert f"label 0 is '{names[0]}' in one and '{names[1]}'" in message
    # And by the phase itself, when it restores one.
    ctx, _, _ = train.build_context(
        _flags(
            f"--flagfile={flagfile}",
            f"--workspace={workspace}",
            f"--records_dir={records}",
            "--phases=evaluate",
        )
    )
    ctx.labels = tuple(swapped)
    with pytest.raises(ValueError, match=rf"label 0 is '{names[0]}' in one and '{names[1]}'"):
        ctx.network.load_finetuned(ctx)


@pytest.mark.slow
def test_init_checkpoint_is_restored_strictly_and_skips_only_what_is_named(
    finished_run, records, flagfile, tmp_path, capsys
):
    base = (
        f"--flagfile={flagfile}",
        f"--records_dir={records}",
        "--phases=warmup",
        "--warmup_epochs=1",
        "--steps_per_epoch=1",
        f"--init_checkpoint={finished_run[0]}/train/search",
    )
    train.run(_flags(*base, f"--workspace={tmp_path / 'a'}", "--init_skip=predictions"))
    out = capsys.readouterr().out
    assert "[init] weights from" in out
    assert "skipped (kept their initial values): predictions/bias, predictions/kernel" in out
    # Another network: the variables that do not fit are named, nothing is trained.
    with pytest.raises(
        ValueError,
        match=r"of another shape: block1_layer1_bn/beta: \[8\] in the checkpoint, \[16\]",
    ):
        train.run(_flags(*base, f"--workspace={tmp_path / 'b'}", "--growth_rate=8"))
    assert not os.path.exists(tmp_path / "b" / "train" / "warmup" / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, blocks, width, strategy",
    [
        ("resnet50", "1,1,1,1", "0.125", "from_probabilities"),
        ("mobilenet_v2", "1,1,1,1,1,1,1", "0.25", "S"),
    ],
)
def test_backbones_fine_tune_evaluate_and_export(
    finished_run, records, flagfile, tmp_path, backbone, blocks, width, strategy
):
    """Paper section 4.5 through the CLI: the template's probabilities mapped onto a backbone, or
    a named strategy, fine-tuned, evaluated and exported: each backbone family once through the
    command line (the mapping by relative depth and the named strategies, for any number of
    fusion layers, are test_backbone_strategies')."""
    if strategy == "from_probabilities":
        probabilities = os.path.join(finished_run[0], "search", "probabilities.json")
        strategy = f"from_probabilities:{probabilities}"
    workspace = tmp_path / backbone
    summaries = train.run(
        _flags(
            f"--flagfile={flagfile}",
            f"--workspace={workspace}",
            f"--records_dir={records}",
            "--phases=finetune,evaluate,export",
            f"--backbone={backbone}",
            f"--backbone_strategy={strategy}",
            f"--backbone_blocks={blocks}",
            f"--backbone_width_multiplier={width}",
            "--steps_per_epoch=2",
            "--test_num_clips=1",
        )
    )
    trained = summaries["finetune"]["strategy"]
    if strategy == "S":
        assert set(trained.replace("|", ",").split(",")) == {"s"}
    with open(workspace / "results.json") as f:
        results = json.load(f)
    assert results["backbone"]["name"] == backbone
    assert set(results["models"]) == {backbone}
    assert results["models"][backbone]["strategy"] == trained == results["best_strategy"]
    assert results["models"][backbone]["num_videos"] == 4
    metadata = checkpoints.read_metadata(str(workspace / "train" / "finetune"))
    assert metadata["network"]["kind"] == "backbone"
    model, _ = checkpoints.load_network(str(workspace / "train" / "finetune"))
    assert model.config.backbone == backbone and str(model.strategy) == trained
    exported = summaries["export"]["path"]
    with open(os.path.join(exported, "model_card.json")) as f:
        card = json.load(f)
    assert json.dumps(card).count(trained) >= 1
    # Template-only phases are refused with a backbone, before any training.
    message = _setup_error(
        f"--flagfile={flagfile}",
        f"--workspace={tmp_path / 'refused'}",
        f"--records_dir={records}",
        f"--backbone={backbone}",
        "--phases=warmup,finetune",
    )
    assert "need the template" in message


def test_training_reads_its_clips_from_a_tf_data_service_with_two_workers(
    records, flagfile, tmp_path, capsys
):
    """``--data_service``: a dispatcher and two workers on 127.0.0.1 (in this process) decode the
    clips of a 2-step warm-up; its epoch line, history and TensorBoard say what share of the
    epoch waited for input. (What the service's clips are: tests/test_data_service.py.)"""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    address = dispatcher.target.removeprefix("grpc://")
    workers = [
        service.WorkerServer(
            service.WorkerConfig(dispatcher_address=address, heartbeat_interval_ms=100)
        )
        for _ in range(2)
    ]
    workspace = str(tmp_path / "ws")
    try:
        assert dispatcher._num_workers() == 2
        train.run(
            _flags(
                f"--flagfile={flagfile}",
                f"--workspace={workspace}",
                f"--records_dir={records}",
                "--phases=warmup",
                "--warmup_epochs=1",
                "--steps_per_epoch=2",
                f"--data_service={dispatcher.target}",
            )
        )
        assert [worker._num_tasks() for worker in workers] == [1, 1]  # both had the job
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()
    logs = os.path.join(workspace, "train", "warmup", "logs")
    (epoch,) = files.read_jsonl(os.path.join(logs, "history.jsonl"))
    assert (epoch["epoch"], epoch["step"]) == (1, 2) and np.isfinite(epoch["loss"])
    assert 0 <= epoch["input_wait_fraction"] <= 1
    out = capsys.readouterr().out
    assert f"input wait {epoch['input_wait_fraction']:.0%}" in out
    tags = {
        value.tag
        for path in tf.io.gfile.glob(os.path.join(logs, "events.out.tfevents*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
    }
    assert "input_wait_fraction" in tags
