"""The project installs as a package and its commands run from any folder.

The package's sources (pyproject.toml, requirements.txt, configs/ and the three packages, nothing
else of the repository) are copied to a temporary folder and installed from there with the
pinned setuptools and wheel of requirements-dev.txt, without network
(``pip install --no-deps --no-build-isolation --no-index --target``), so the build leaves nothing
in the repository. Then, from another folder, with only the installed copy on ``PYTHONPATH``:
the subpackages import from it (not from the repository), the default flagfiles are there, and a
command runs, as ``python -m`` and as its console script. About 8 s on 2 cores (the build 2 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = (
    "pyproject.toml",
    "requirements.txt",
    "configs",
    *("tfrecords_tools", "pipelines", "stfusion_tf"),
)

_CHECK = """
import json, os
import pipelines.layouts, stfusion_tf.training.phases, stfusion_tf.models.backbones, tfrecords_tools.format
from pipelines import demo
from stfusion_tf import study
print(json.dumps({
    "modules": [m.__file__ for m in (pipelines.layouts, stfusion_tf.training.phases,
                                     stfusion_tf.models.backbones, tfrecords_tools.format)],
    "study_flagfile": study.DEFAULT_FLAGFILE,
    "demo_config": demo.training_config(),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The folder the package was installed into."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = os.path.join(ROOT, name)
        if os.path.isdir(path):
            shutil.copytree(
                path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(path, source / name)
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return target


def _env(target) -> dict:
    return dict(os.environ, PYTHONPATH=str(target), TF_CPP_MIN_LOG_LEVEL="3")


def test_installed_package_runs_from_another_folder(installed, tmp_path):
    check = subprocess.run(
        [sys.executable, "-c", _CHECK],
        cwd=tmp_path, env=_env(installed), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    found = json.loads(check.stdout.splitlines()[-1])
    for path in [*found["modules"], found["study_flagfile"], found["demo_config"]]:
        assert path.startswith(str(installed)), path
        assert os.path.isfile(path) and not os.path.islink(path), path
    with open(found["study_flagfile"]) as f:
        assert "--num_strategies" in f.read()

    # The same command as `python -m` and as its console script.
    for command in (
        [sys.executable, "-m", "stfusion_tf.describe", "--help"],
        [str(installed / "bin" / "stfusion-describe"), "--help"],
    ):
        describe = subprocess.run(
            command, cwd=tmp_path, env=_env(installed), capture_output=True, text=True, timeout=300
        )
        assert describe.returncode == 0, describe.stderr
        assert describe.stdout.startswith("Describes a template network"), describe.stdout
        assert "--num_frames" in describe.stdout
    assert os.listdir(tmp_path) == []
