"""The observation study (python -m stfusion_tf.study) end to end on two tiny datasets of real
videos (motion and appearance) and two seeds: observations.json holds exactly what the runs'
probability tables say, the chart is written, the verdicts are printed, a second run trains
nothing, --finetune reads the test accuracies of results.json, and a user's mistake stops the
study with one line before any training.

Same seed, same numbers, on the study's own runs: another seed wrote other ones, and a training
command killed with SIGKILL inside a search epoch and started again writes, byte for byte, the
probability space, strategy scores and search logs of the study's uninterrupted run of that seed
(two processes' worth of work, one resumed from a step checkpoint, agree)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from absl import flags

from stfusion_tf import checkpoints, study
from tests import commands, console_output, record_fixtures
from tfrecords_tools import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny template, a fine-tune of one epoch, fixed-gate scoring of 4 strategies.
TINY = (
    *record_fixtures.TINY_TEMPLATE_FLAGS,
    "--eval_crop_size=24",
    "--finetune_epochs=1",
    "--num_strategies=4",
    "--scoring_method=fixed",
    "--test_num_clips=1",
)
SEEDS = (0, 1)
# Every test here trains or reads the study's tiny runs (about 100 s of CPU in all).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    return {
        task: record_fixtures.convert_tiny_dataset(str(tmp_path_factory.mktemp(task)), task)
        for task in ("motion", "appearance")
    }


def _study(*args) -> dict:
    values = flags.FlagValues()
    study.define_flags(values)
    values(["study", *TINY, *args])
    return study.run(values)


@pytest.fixture(scope="module")
def first_study(datasets, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("study"))
    records = ",".join(datasets.values())
    return output, _study(f"--records_dirs={records}", "--seeds=0,1", f"--output_dir={output}")


def test_observations_are_what_the_runs_probability_tables_say(first_study, capsys):
    output, result = first_study
    with open(os.path.join(output, study.OBSERVATIONS_FILE)) as f:
        written = json.load(f)
    assert written["verdicts"] == result["verdicts"]
    # Names come from the records folders' parents (the folders are called "examples").
    assert list(written["datasets"]) == ["motion", "appearance"]
    for name, summary in written["datasets"].items():
        assert summary["seeds"] == list(SEEDS)
        upper_st, upper_s_kept = [], []
        for seed in SEEDS:
            workspace = os.path.join(output, "runs", f"{name}-seed{seed}")
            assert written["runs"][name][str(seed)] == workspace
            with open(os.path.join(workspace, "search", "probabilities.json")) as f:
                table = json.load(f)
            assert [layer["name"] for layer in summary["layers"]] == [
                layer["name"] for layer in table["layers"]
            ]
            st, s_kept = [], []
            for layer, entry in zip(table["layers"], summary["layers"], strict=True):
                p_s = layer["drop_probability"]["s_branch"]
                p_t = layer["drop_probability"]["t_branch"]
                # P(ST): S dropped, T kept (supplementary Eq. S17, independent gates).
                st.append(p_s * (1 - p_t))
                s_kept.append(1 - p_s)
                assert entry["P(ST)"]["per_seed"][seed] == pytest.approx(st[-1], abs=1e-9)
                assert entry["P(S kept)"]["per_seed"][seed] == pytest.approx(1 - p_s, abs=1e-12)
                assert entry["P(T kept)"]["per_seed"][seed] == pytest.approx(1 - p_t, abs=1e-12)
            upper = len(st) // 2  # 3 fusion layers (block, transition, block): the last one
            upper_st.append(sum(st[-upper:]) / upper)
            upper_s_kept.append(sum(s_kept[-upper:]) / upper)
        stats = summary["upper_half"]["P(ST)"]
        assert stats["per_seed"] == pytest.approx(upper_st, abs=1e-9)
        assert stats["mean"] == pytest.approx(sum(upper_st) / len(SEEDS), abs=1e-9)
        assert (stats["min"], stats["max"]) == pytest.approx((min(upper_st), max(upper_st)))
        assert summary["upper_half"]["P(S kept)"]["per_seed"] == pytest.approx(upper_s_kept)
    # Without --finetune the accuracies are the holdout scores of best_strategy.json.
    assert written["accuracy"]["source"].startswith("holdout split")
    for name in written["datasets"]:
        for seed in SEEDS:
            path = os.path.join(output, "runs", f"{name}-seed{seed}", "search")
            with open(os.path.join(path, "best_strategy.json")) as f:
                best = json.load(f)
            models = written["accuracy"]["datasets"][name]["models"]
            assert models["searched"]["per_seed"][seed] == best["scores"]["holdout_top1"]
            assert models["ST"]["per_seed"][seed] == best["all_the_way"]["ST"]["holdout_top1"]
    # The training flags each run received, from this command line.
    assert "--blocks=1,1" in written["flags"]["training"]
    assert not any(a.startswith("--seed=") for a in written["flags"]["training"])
    with open(os.path.join(output, study.OBSERVATIONS_PLOT), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(os.path.join(output, study.OBSERVATIONS_PLOT)) > 20_000


# What a seed decides, as the runs wrote it; timings are not numbers of the run.
SEEDED_ARTIFACTS = (
    "search/probabilities.json",
    "search/strategies.csv",
    "train/search/logs/history.jsonl",
    "train/search/logs/drop_probabilities.jsonl",
)
TIMINGS = ("input_wait_fraction",)


def _seeded_artifacts(workspace) -> dict:
    out = {}
    for name in SEEDED_ARTIFACTS:
        with open(os.path.join(workspace, name)) as f:
            text = f.read()
        if name.endswith(".jsonl"):
            lines = [json.loads(line) for line in text.splitlines()]
            text = [{k: v for k, v in line.items() if k not in TIMINGS} for line in lines]
        out[name] = text
    return out


def test_another_seed_gives_other_numbers(first_study):
    output, _ = first_study
    seed0 = _seeded_artifacts(study.run_workspace(output, "motion", 0))
    table = json.loads(seed0["search/probabilities.json"])
    moved = [p for layer in table["layers"] for p in layer["drop_probability"].values()]
    assert max(abs(p - 0.1) for p in moved) > 1e-3  # the gates learned: equality is not trivial
    seed1 = _seeded_artifacts(study.run_workspace(output, "motion", 1))
    for name in SEEDED_ARTIFACTS:
        assert seed1[name] != seed0[name], name


def test_kill_9_inside_a_search_epoch_then_the_same_command_gives_the_same_numbers(
    first_study, datasets, tmp_path, capfd
):
    output, _ = first_study
    workspace = str(tmp_path / "workspace")
    # The warm-up is the study's (the same flags and seed): the command's search starts from it.
    record_fixtures.copy_finished_warmup(study.run_workspace(output, "motion", 0), workspace)
    command = [
        *(sys.executable, "-m", "stfusion_tf.train", *TINY),
        *(f"--workspace={workspace}", f"--records_dir={datasets['motion']}", "--seed=0"),
        *("--phases=" + ",".join(study.SEARCH_PHASES), "--checkpoint_steps=1"),
    ]
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    search = os.path.join(workspace, "train", "search")
    index = os.path.join(search, "checkpoints", "checkpoint")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not os.path.exists(index) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(index), "the search phase never wrote a checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(search, "DONE"))  # killed mid-phase
    warmup_done = os.path.getmtime(os.path.join(workspace, "train", "warmup", "DONE"))

    # The same command again, in this process (TensorFlow is imported already), verbose: what
    # a user sees when resuming.
    finished = commands.run(capfd, *command[2:], "--verbose")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert console_output.noise(finished.stdout + finished.stderr) == []
    assert "[warmup] already done" in finished.stdout
    resumed = re.search(
        r"\[search\] resuming from \S+ \(epoch (\d), step (\d)/3\)", finished.stdout
    )
    assert resumed, finished.stdout  # from a step checkpoint: the killed steps are not redone
    assert os.path.getmtime(os.path.join(workspace, "train", "warmup", "DONE")) == warmup_done
    history = files.read_jsonl(os.path.join(search, "logs", "history.jsonl"))
    assert [(h["epoch"], h["step"]) for h in history] == [(1, 3), (2, 6)]  # no step done twice
    assert _seeded_artifacts(workspace) == _seeded_artifacts(
        study.run_workspace(output, "motion", 0)
    )


def test_a_second_study_trains_nothing_and_reads_finetuned_test_accuracy(
    first_study, datasets, capsys
):
    output, first = first_study
    capsys.readouterr()
    warmup_done = os.path.join(output, "runs", "motion-seed0", "train", "warmup", "DONE")
    before = os.path.getmtime(warmup_done)
    again = _study(
        f"--records_dirs={','.join(datasets.values())}", "--seeds=0,1", f"--output_dir={output}"
    )
    assert os.path.getmtime(warmup_done) == before
    assert again["datasets"] == first["datasets"] and again["verdicts"] == first["verdicts"]
    printed = capsys.readouterr().out
    assert "[1/4] motion seed 0: warmup " in printed
    # The verdict of each ordered pair, with its numbers.
    assert "motion vs appearance, upper half: P(ST) higher: " in printed
    assert "appearance vs motion, upper half: P(ST) higher: " in printed
    assert "seed ranges" in printed

    # One dataset, one seed, --finetune: the motion run adds fine-tune and evaluate only.
    result = _study(
        f"--records_dirs={datasets['motion']}", "--seeds=0", f"--output_dir={output}", "--finetune"
    )
    printed = capsys.readouterr().out
    assert "need two or more" in printed and result["verdicts"] == []
    assert os.path.getmtime(warmup_done) == before
    with open(os.path.join(output, "runs", "motion-seed0", "results.json")) as f:
        results = json.load(f)
    metric = f"video_top1@{results['protocol']}"
    models = result["accuracy"]["datasets"]["motion"]["models"]
    assert result["accuracy"]["source"].startswith("test split")
    assert models["searched"]["per_seed"] == [results["models"]["opt_finetuned"]["metrics"][metric]]
    # The all-the-way strategies were fine-tuned like the best, each in its own phase folder.
    workspace = study.run_workspace(output, "motion", 0)
    for unit in ("S", "ST", "S+ST"):
        phase = f"finetune_all_the_way/{unit}"
        assert results["models"][unit]["weights"] == f"fine-tuned pruned network ({phase})"
        assert models[unit]["per_seed"] == [results["models"][unit]["metrics"][metric]]
        with open(os.path.join(workspace, "train", phase, "DONE")) as f:
            done = json.load(f)
        assert done["strategy"] == results["models"][unit]["strategy"]
        assert done["step"] == 3  # the best's budget: 1 epoch of 3 steps
        assert checkpoints.read_metadata(os.path.join(workspace, "train", phase))["phase"] == phase
        logs = os.listdir(os.path.join(workspace, "train", phase, "logs"))
        assert any(n.startswith("events.out.tfevents") for n in logs)  # a TensorBoard run


def test_a_mistake_stops_the_study_with_one_line_before_any_training(tmp_path, datasets, capfd):
    output = tmp_path / "study"
    proc = commands.run(
        capfd,
        "stfusion_tf.study",
        f"--records_dirs={datasets['motion']},{tmp_path / 'nowhere'}",
        f"--output_dir={output}",
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("stfusion_tf.study")]
    assert len(errors) == 1 and "no such folder" in errors[0] and "nowhere" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (output / "runs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--seeds=0,x",), "--seeds must be comma-separated integers"),
        (("--seeds=1,1",), "distinct"),
        (("--names=a",), "one name per --records_dirs folder"),
        (("--names=a,a",), "Dataset names must differ"),
    ],
)
def test_user_errors_are_found_before_any_training(datasets, tmp_path, args, message):
    values = flags.FlagValues()
    study.define_flags(values)
    records = ",".join(datasets.values())
    values(["study", f"--records_dirs={records}", f"--output_dir={tmp_path}", *args])
    with pytest.raises(study.StudyError, match=message):
        study.prepare(values)
    assert not (tmp_path / "runs").exists()


def test_the_default_flagfile_comes_first():
    assert study.with_default_flagfile(["study", "--seeds=0"]) == [
        "study",
        f"--flagfile={study.DEFAULT_FLAGFILE}",
        "--seeds=0",
    ]
    assert study.with_default_flagfile(["study", "--flagfile=x.cfg"]) == [
        "study",
        "--flagfile=x.cfg",
    ]
    assert os.path.exists(study.DEFAULT_FLAGFILE)
