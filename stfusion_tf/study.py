"""The paper's observations, measured on any datasets over several seeds.

    python -m stfusion_tf.study --output_dir=/tmp/stfusion_study --finetune
    python -m stfusion_tf.study --records_dirs=/data/ucf101/examples,/data/sthv1/examples \
        --seeds=0,1,2 --flagfile=configs/ucf101.cfg --output_dir=/data/study

For every dataset and seed, runs the training phases (``stfusion_tf.train``) warmup, search and
sample, and with ``--finetune`` also finetune and evaluate, fine-tuning the best strategy AND the
S, ST and S+ST all-the-way strategies alike (the paper's Table 2), each run in its own workspace
``<output_dir>/runs/<dataset>-seed<seed>``. Then writes ``<output_dir>/observations.json`` and
``observations.png`` (``stfusion_tf.observations``, ``observation_plots.plot_observations``): per
fusion layer, the marginal probabilities of S, ST, S+ST and none and the keep probabilities of the
S and T units, mean and min/max over seeds; the searched against all-the-way accuracy (test split
after fine-tuning with ``--finetune``, else the holdout scores of the sample phase, which says so);
and prints, for each ordered pair of datasets, whether the upper half's P(ST) is higher for the
first, whether its P(S kept) is lower, and whether the seed ranges overlap.

Why seeds: a short search on a small dataset moves the drop probabilities differently from seed to
seed; a difference between two datasets means something only if the seeds' ranges are apart.

Without ``--records_dirs`` it makes the synthetic ``motion`` and ``appearance`` datasets itself
(``pipelines.make_synthetic`` and ``pipelines.make_tfrecords`` as commands, under
``<output_dir>/data/``; reused once converted). Names default to each records folder's name (its
parent's if it is called ``examples``); ``--names`` sets them. Every training flag works here
(``--flagfile``, default ``configs/study_cpu.cfg``, then any flag after it), except that the study
sets ``--workspace``, ``--records_dir``, ``--seed``, ``--phases`` (and, with ``--finetune``,
``--finetune_all_the_way`` and ``--evaluate_all_the_way``) for each run. Running the same command
again skips every finished phase: the observations are recomputed from the runs' files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

from absl import app, flags

from stfusion_tf import observations, report, train_command
from tfrecords_tools import command_line, files

# configs/study_cpu.cfg, shipped in the package (stfusion_tf/configs links to configs/ in the
# repository; pyproject.toml installs it as package data), so an installed copy finds it.
DEFAULT_FLAGFILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "configs", "study_cpu.cfg"
)
OBSERVATIONS_FILE = "observations.json"
OBSERVATIONS_PLOT = "observations.png"
SYNTHETIC_TASKS = ("motion", "appearance")
SEARCH_PHASES = ("warmup", "search", "sample")
FINETUNE_PHASES = ("finetune", "evaluate")
# Training flags the study sets for each run (a value given for them is replaced).
SET_PER_RUN = (
    "workspace",
    "records_dir",
    "seed",
    "phases",
    "finetune_all_the_way",
    "evaluate_all_the_way",
)
_SPLITS = ("train", "holdout", "test")


class StudyError(ValueError):
    """A problem a user can fix, found before any training starts."""


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The study's flags and every training flag (tests pass their own ``FlagValues``)."""
    train_command.define_flags(flag_values)
    fv = dict(flag_values=flag_values)
    flags.DEFINE_list(
        "records_dirs",
        [],
        "Records folders (pipelines.make_tfrecords output with a holdout split), one per "
        "dataset; empty: the synthetic motion and appearance datasets, made under "
        "<output_dir>/data.",
        **fv,
    )
    flags.DEFINE_list("names", [], "Dataset names (default: from the records folders).", **fv)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one run per dataset and seed.", **fv)
    flags.DEFINE_string("output_dir", "/tmp/stfusion_study", "Runs, data and observations.", **fv)
    flags.DEFINE_bool(
        "finetune",
        False,
        "Also fine-tune and test the best strategy and S, ST, S+ST all the way.",
        **fv,
    )
    flags.DEFINE_integer(
        "videos_per_class", 40, "Training videos per class of the synthetic datasets.", **fv
    )


def training_flag_names() -> list[str]:
    """The names of ``stfusion_tf.train``'s flags."""
    scratch = flags.FlagValues()
    train_command.define_flags(scratch)
    return sorted(scratch)


def forwarded_args(flag_values: flags.FlagValues) -> list[str]:
    """The training flags given to the study (flagfile or command line), serialized, less the
    ones the study sets per run: what every run receives."""
    return [
        flag_values[name].serialize()
        for name in training_flag_names()
        if name not in SET_PER_RUN and flag_values[name].present
    ]


def parse_seeds(values: Sequence[str]) -> list[int]:
    """``--seeds`` as distinct ints, at least one.

    >>> parse_seeds(["0", "1", "2"])
    [0, 1, 2]
    """
    try:
        seeds = [int(v) for v in values if str(v).strip()]
    except ValueError:
        raise StudyError(
            f"--seeds must be comma-separated integers, e.g. --seeds=0,1,2. Received: {values!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyError(f"--seeds must list distinct integers, e.g. 0,1,2. Received: {values!r}")
    return seeds


def dataset_name(records_dir: str) -> str:
    """A records folder's name, or its parent's if it is called ``examples`` (a workspace's).

    >>> dataset_name("/data/ucf101/examples/"), dataset_name("/data/sthv1_records")
    ('ucf101', 'sthv1_records')
    """
    path = os.path.normpath(os.path.abspath(records_dir))
    base = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if base == "examples" else base


def resolve_datasets(records_dirs: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """``{name: records_dir}`` in the order given, checked: folders exist, names distinct."""
    missing = [d for d in records_dirs if not os.path.isdir(d)]
    if missing:
        raise StudyError(
            f"--records_dirs: no such folder {', '.join(missing)}; convert videos first with "
            "python -m pipelines.make_tfrecords --output_dir=... --holdout_fraction=0.2"
        )
    if names and len(names) != len(records_dirs):
        raise StudyError(
            f"--names must give one name per --records_dirs folder. Received: {len(names)} "
            f"names for {len(records_dirs)} folders"
        )
    names = list(names) or [dataset_name(d) for d in records_dirs]
    if len(set(names)) != len(names):
        raise StudyError(
            f"Dataset names must differ (each names a run folder). Received: {names}; set "
            "them with --names=A,B"
        )
    return dict(zip(names, records_dirs, strict=True))


def _converted(records_dir: str) -> bool:
    return all(
        os.path.exists(os.path.join(records_dir, f"{split}.manifest.json")) for split in _SPLITS
    )


def make_synthetic_dataset(root: str, task: str, videos_per_class: int) -> str:
    """The synthetic ``task`` as records in ``<root>/examples`` (videos in ``<root>/videos``),
    made by the project's commands as subprocesses (``stfusion_tf`` does not import Beam):
    train videos with seed 0, test videos with seed 1 (a quarter as many), a fifth of train
    carved out as the holdout split, short side 64, as ``make demo`` does. Reused when the
    three manifests exist; a half-made folder is made again."""
    records = os.path.join(root, "examples")
    if _converted(records):
        return records
    shutil.rmtree(root, ignore_errors=True)
    videos = os.path.join(root, "videos")
    for split, count, seed in (
        ("train", videos_per_class, 0),
        ("test", max(2, videos_per_class // 4), 1),
    ):
        _command(
            "pipelines.make_synthetic",
            f"--output_dir={os.path.join(videos, split)}",
            f"--task={task}",
            f"--videos_per_class={count}",
            f"--seed={seed}",
        )
    _command(
        "pipelines.make_tfrecords",
        "--dataset_format=folder",
        f"--input_dir={videos}",
        f"--output_dir={records}",
        "--holdout_fraction=0.2",
        "--short_side=64",
    )
    return records


def _command(module: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(
            f"python -m {module} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
        )


def run_workspace(output_dir: str, name: str, seed: int) -> str:
    """Where the run of dataset ``name`` and ``seed`` keeps its workspace."""
    return os.path.join(output_dir, "runs", f"{name}-seed{seed}")


def run_one(args: Sequence[str], workspace: str, records_dir: str, seed: int, phases) -> dict:
    """One training run in this process, phase by phase: ``{phase: seconds}``.

    A fresh ``FlagValues`` gets the forwarded ``args`` and then the run's own workspace,
    records, seed and phases; finished phases are skipped by the phases themselves.
    """
    from stfusion_tf import train  # TensorFlow: for the runs, not for the command line

    values = flags.FlagValues()
    train_command.define_flags(values)
    own = [
        f"--workspace={workspace}",
        f"--records_dir={records_dir}",
        f"--seed={seed}",
        f"--phases={','.join(phases)}",
    ]
    if "finetune" in phases:
        own += ["--finetune_all_the_way", "--evaluate_all_the_way"]
    values(["stfusion_tf.study", *args, *own])
    try:
        ctx, checked, settings = train.build_context(values)
    except (ValueError, FileNotFoundError) as e:  # flags, records, workspace: nothing trained
        raise StudyError(f"{workspace}: {e}") from e
    seconds = {}
    for phase in checked:
        start = time.time()
        train.run_phases(ctx, [phase], settings)
        seconds[phase] = time.time() - start
    return seconds


def read_run(workspace: str, finetune: bool) -> tuple[dict, dict[str, float]]:
    """``(probability table, {model: top1})`` of a finished run."""
    from stfusion_tf import scoring  # TensorFlow: for the runs, not for the command line

    table = scoring.read_probability_table(os.path.join(workspace, "search"))
    if finetune:
        with open(os.path.join(workspace, "results.json")) as f:
            return table, observations.results_accuracies(json.load(f))
    _, record = scoring.read_best_strategy(os.path.join(workspace, "search"))
    return table, observations.holdout_accuracies(record)


def accuracy_source(workspace: str, finetune: bool) -> str:
    """What the accuracy table holds, in words (from one run's files)."""
    if not finetune:
        return (
            "holdout split (search/best_strategy.json): strategies pruned from the search "
            "template, not fine-tuned; the searched one was selected on this split, so its "
            "score is optimistic"
        )
    with open(os.path.join(workspace, "results.json")) as f:
        results = json.load(f)
    return (
        f"test split (results.json), {report.main_metric(results)}: the searched strategy and "
        "S, ST, S+ST all the way, each fine-tuned alike from the search template"
    )


def prepare(f: flags.FlagValues) -> tuple[dict[str, str], list[int], list[str]]:
    """Every check a user's input can fail, before any training: ``(datasets, seeds, phases)``.
    Makes the synthetic datasets when no ``--records_dirs`` is given."""
    seeds = parse_seeds(f.seeds)
    phases = [*SEARCH_PHASES, *(FINETUNE_PHASES if f.finetune else ())]
    if f.records_dirs:
        datasets = resolve_datasets(f.records_dirs, f.names)
    else:
        if f.names and len(f.names) != len(SYNTHETIC_TASKS):
            raise StudyError(
                f"--names needs {len(SYNTHETIC_TASKS)} names for the synthetic datasets "
                f"{SYNTHETIC_TASKS}. Received: {f.names}"
            )
        datasets = {}
        for name, task in zip(f.names or SYNTHETIC_TASKS, SYNTHETIC_TASKS, strict=True):
            root = os.path.join(f.output_dir, "data", task)
            print(f"stfusion_tf.study: synthetic {task!r} dataset in {root}", flush=True)
            datasets[name] = make_synthetic_dataset(root, task, f.videos_per_class)
    from stfusion_tf import training  # TensorFlow: once the study's own flags are checked

    for records_dir in datasets.values():
        try:
            training.check_records(records_dir, training.splits_needed(phases))
        except (ValueError, FileNotFoundError) as e:
            raise StudyError(f"--records_dirs: {e}") from e
    return datasets, seeds, phases


def run(f: flags.FlagValues) -> dict:
    """The whole study from parsed flags; returns what ``observations.json`` holds."""
    start = time.time()
    datasets, seeds, phases = prepare(f)
    if len(datasets) < 2:
        print(
            "stfusion_tf.study: one dataset: the observations are written, but the verdicts "
            "compare datasets and need two or more (--records_dirs=A,B).",
            flush=True,
        )
    args = forwarded_args(f)
    total = len(datasets) * len(seeds)
    tables, accuracies, runs = {}, {}, {}
    done = 0
    for name, records_dir in datasets.items():
        tables[name], accuracies[name], runs[name] = [], [], {}
        for seed in seeds:
            workspace = run_workspace(f.output_dir, name, seed)
            seconds = run_one(args, workspace, records_dir, seed, phases)
            done += 1
            times = ", ".join(f"{phase} {s:.1f}s" for phase, s in seconds.items())
            print(f"[{done}/{total}] {name} seed {seed}: {times} ({workspace})", flush=True)
            table, accuracy = read_run(workspace, f.finetune)
            tables[name].append(table)
            accuracies[name].append(accuracy)
            runs[name][str(seed)] = workspace
    source = accuracy_source(workspace, f.finetune)  # the last run's: every run has the same
    result = observations.summarize(tables, accuracies, seeds, source)
    result["runs"] = runs
    result["records_dirs"] = datasets
    result["flags"] = {
        "study": {
            "seeds": seeds,
            "finetune": f.finetune,
            "phases": phases,
            "output_dir": f.output_dir,
        },
        "training": args,
    }
    result["seconds"] = round(time.time() - start, 1)
    write_outputs(f.output_dir, result)
    print("\n".join(report_lines(result)), flush=True)
    return result


def write_outputs(output_dir: str, result: dict) -> None:
    """``observations.json`` and ``observations.png`` in ``output_dir``, each atomically."""
    from stfusion_tf import observation_plots  # matplotlib only when the chart is drawn

    files.write_atomically(
        os.path.join(output_dir, OBSERVATIONS_FILE),
        json.dumps(result, indent=2) + "\n",  # datasets in the order given
    )
    observation_plots.plot_observations(result, os.path.join(output_dir, OBSERVATIONS_PLOT))


def report_lines(result: dict) -> list[str]:
    """What the study prints at the end: upper-half values, verdicts, accuracy, files."""
    first = next(iter(result["datasets"].values()))
    lines = [f"Upper half: fusion layers {', '.join(first['upper_half']['layers'])}"]
    for name, summary in result["datasets"].items():
        cells = ", ".join(
            f"{q} {s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"
            for q, s in summary["upper_half"].items()
            if q in ("P(ST)", "P(S kept)", "P(T kept)")
        )
        lines.append(f"  {name}: {cells}")
    lines += observations.verdict_lines(result["verdicts"])
    lines += observations.accuracy_lines(result["accuracy"])
    output_dir = result["flags"]["study"]["output_dir"]
    lines.append(
        f"Wrote {os.path.join(output_dir, OBSERVATIONS_FILE)} and "
        f"{os.path.join(output_dir, OBSERVATIONS_PLOT)} in {result['seconds']:.0f}s"
    )
    return lines


def with_default_flagfile(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--flagfile=configs/study_cpu.cfg`` first unless a flagfile is given
    (flags after it override it)."""
    argv = list(argv)
    if any(a.lstrip("-").startswith("flagfile") for a in argv[1:]):
        return argv
    return [argv[0], f"--flagfile={DEFAULT_FLAGFILE}", *argv[1:]]


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]} (every setting is a --flag).")
    try:
        run(flags.FLAGS)
    except StudyError as e:
        # Seeds, names, records, training flags: found before the run they concern trains;
        # the message says what to do, a traceback would only hide it.
        print(f"stfusion_tf.study: error: {e}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    """The command line: ``python -m stfusion_tf.study`` and the ``stfusion-study`` script."""
    define_flags()
    command_line.run(main, argv=with_default_flagfile(sys.argv), imports=("tensorflow",))


if __name__ == "__main__":
    cli()
