r"""What "same seed, same numbers" costs, and whether it holds across thread counts.

    python bench/determinism.py --records_dir=/tmp/stfusion_demo/workspace/examples \
        --flagfile_for_runs=configs/demo_cpu.cfg --repeats=2

Runs the training entry point's ``warmup,search,sample`` phases on the same records with the same
``--seed``, alternating ``--deterministic`` and ``--nodeterministic`` runs (``--repeats`` each, in
fresh processes, side by side so the machine's drift hits both), then one deterministic run on a
single core (``taskset -c 0``: TensorFlow then sizes its thread pools for one core). Prints the
wall time of each run, the ratio deterministic / not, and which runs wrote the same
``search/probabilities.json`` and ``search/strategies.csv`` as the first deterministic run.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_RECORDS = flags.DEFINE_string("records_dir", None, "Converted records (make demo's examples).")
_FLAGFILE = flags.DEFINE_string("flagfile_for_runs", "configs/demo_cpu.cfg", "Training flags.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs of each mode.")
_SEED = flags.DEFINE_integer("seed", 0, "The seed of every run.")
flags.mark_flag_as_required("records_dir")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = ("search/probabilities.json", "search/strategies.csv")


def _run(workspace: str, deterministic: bool, one_core: bool = False) -> float:
    command = [
        sys.executable,
        "-m",
        "stfusion_tf.train",
        f"--flagfile={_FLAGFILE.value}",
        f"--workspace={workspace}",
        f"--records_dir={_RECORDS.value}",
        f"--seed={_SEED.value}",
        "--phases=warmup,search,sample",
        "--noverbose",
        "--deterministic" if deterministic else "--nodeterministic",
    ]
    if one_core:
        command = ["taskset", "-c", "0", *command]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def _same(a: str, b: str) -> bool:
    return all(
        filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in ARTIFACTS
    )


def main(argv):
    del argv
    root = tempfile.mkdtemp(prefix="stfusion-determinism-")
    try:
        runs = []
        for i in range(_REPEATS.value):
            for deterministic in (True, False):
                name = f"{'det' if deterministic else 'nondet'}{i}"
                seconds = _run(os.path.join(root, name), deterministic)
                runs.append((name, deterministic, seconds))
                print(f"{name}: {seconds:.1f} s", flush=True)
        one_core = _run(os.path.join(root, "det_one_core"), True, one_core=True)
        print(f"det_one_core: {one_core:.1f} s (taskset -c 0)")
        reference = os.path.join(root, "det0")
        det = [s for _, d, s in runs if d]
        nondet = [s for _, d, s in runs if not d]
        print(
            f"deterministic / not: {sum(det) / len(det):.1f} s / {sum(nondet) / len(nondet):.1f} s"
            f" = {sum(det) / sum(nondet) * len(nondet) / len(det):.2f}x"
        )
        for name in [n for n, _, _ in runs[1:]] + ["det_one_core"]:
            same = _same(reference, os.path.join(root, name))
            print(f"{name}: {'same' if same else 'DIFFERENT'} artifacts as det0")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
