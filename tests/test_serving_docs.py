"""The serving docs agree with what training exports by default, so they cannot drift again:
``docs/serving/models.config`` (a valid ``ModelServerConfig``), the README's ``docker run`` line
(its mounts and config files) and its export and client examples all name the model and the
folder that ``stfusion_tf.train`` writes, ``<workspace>/serving/<--model_name>/<version>``."""

import os
import re
import shlex

import pytest
from absl import flags
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from stfusion_tf import train_command
from stfusion_tf.training import PhaseSettings
from stfusion_tf.training.export import SERVING_DIR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "serving")


def _default_model_name() -> str:
    values = flags.FlagValues()
    train_command.define_flags(values)
    name = values["model_name"].default
    assert name == PhaseSettings.model_name  # the command's default is the library's
    return name


def _code_block(text: str, needle: str) -> str:
    """The README's fenced code block holding ``needle``, its continuation lines joined."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    (block,) = [b for b in blocks if needle in b]
    return block.replace("\\\n", " ")


def _options(command: str) -> dict:
    """``--name=value`` options of a shell command; ``-v`` mounts as ``{container: host}``."""
    words = shlex.split(command, comments=True)
    options = {w[2:].partition("=")[0]: w.partition("=")[2] for w in words if w[:2] == "--"}
    mounts = [words[i + 1] for i, w in enumerate(words) if w == "-v"]
    options["mounts"] = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    return options


@pytest.fixture(scope="module")
def readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


@pytest.fixture(scope="module")
def docker(readme) -> dict:
    return _options(_code_block(readme, "docker run"))


def test_models_config_serves_the_default_export(docker):
    with open(os.path.join(DOCS, "models.config")) as f:
        text = f.read()
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    name = _default_model_name()
    assert (model.name, model.model_platform) == (name, "tensorflow")
    # /models is the workspace's serving folder: the export's <serving>/<name> as the server sees it.
    serving_host = docker["mounts"]["/models"]
    assert serving_host.endswith(f"/{SERVING_DIR}")
    assert model.base_path == f"/models/{name}"
    # The header's command is the README's.
    assert f"--model_config_file={docker['model_config_file']}" in text


def test_docker_line_mounts_the_files_it_names(docker):
    config_mount = docker["mounts"]["/config"]
    assert config_mount.endswith("/docs/serving")
    for option in ("model_config_file", "batching_parameters_file"):
        folder, name = os.path.split(docker[option])
        assert folder == "/config", option
        assert os.path.exists(os.path.join(DOCS, name)), option


def test_readme_export_and_client_examples_name_the_default_export(readme, docker):
    name = _default_model_name()
    serving = docker["mounts"]["/models"]
    client = _options(_code_block(readme, "stfusion_tf.serving_client video.mp4"))
    assert client["model_card"] == f"{serving}/{name}/1/model_card.json"
    assert client["model_name"] == name
    export = _code_block(readme, "python -m stfusion_tf.export")
    assert _options(export)["serving_root"] == serving and _options(export)["model_name"] == name
    assert f"--dir {serving}/{name}/1" in export and f"--model={serving}/{name}/1" in export
    assert f"`POST /v1/models/{name}:predict`" in readme
    assert f"maps the name `{name}` to `/models/{name}`" in readme
