"""Every ``python -m`` entry point's front door (``tfrecords_tools.command_line``): ``--help``
lists the command's own flags, exits 0 and writes nothing; a misspelt flag is one line naming it
and the closest flag, exit status 2, before anything is read or written.

The parsing itself is tested in process on private ``FlagValues``; the entry points as real
command lines (subprocesses, ``python -m``), one test each running ``--help`` and the misspelt
flag side by side. Both are answered before TensorFlow, Keras or Beam is imported (each would
cost seconds): the subprocesses run with ``-X importtime``, whose report on stderr names every
module imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from absl import app, flags

from pipelines import pipeline_args
from tests import console_output
from tfrecords_tools import command_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flag_values() -> flags.FlagValues:
    values = flags.FlagValues()
    flags.DEFINE_integer("num_frames", 16, "Frames.", flag_values=values)
    flags.DEFINE_float("holdout_fraction", 0.0, "Holdout.", flag_values=values)
    flags.DEFINE_bool("flip", True, "Flip.", flag_values=values)
    flags.DEFINE_integer(
        "frames", None, "Deprecated: the old name of --num_frames.", flag_values=values
    )
    return values


def test_an_unknown_flag_is_named_with_the_closest_one():
    values = _flag_values()
    with pytest.raises(app.UsageError) as e:
        command_line.parse_flags(["cmd", "--holdout=0.2"], values)
    assert str(e.value) == "unknown flag --holdout (did you mean --holdout_fraction?)"
    with pytest.raises(
        app.UsageError, match=r"^unknown flag --noflipp \(did you mean --noflip\?\)$"
    ):
        command_line.parse_flags(["cmd", "--noflipp"], values)
    with pytest.raises(app.UsageError, match=r"^unknown flag --zzz$"):
        command_line.parse_flags(["cmd", "--zzz=1"], values)
    # A flag that a later parser takes (also_known) is suggested too.
    with pytest.raises(app.UsageError, match=r"did you mean --workspace\?"):
        command_line.parse_flags(["cmd", "--workspac=x"], values, also_known=["workspace"])


def test_bad_values_are_one_line_and_known_only_keeps_the_rest():
    values = _flag_values()
    with pytest.raises(app.UsageError) as e:
        command_line.parse_flags(["cmd", "--num_frames=many"], values)
    assert "\n" not in str(e.value) and "--num_frames" in str(e.value)
    rest = command_line.parse_flags(
        ["cmd", "--num_frames=8", "--runner", "DirectRunner", "video.mp4"], values, known_only=True
    )
    assert rest == ["cmd", "--runner", "DirectRunner", "video.mp4"] and values.num_frames == 8


def test_a_renamed_flag_takes_its_old_name_with_a_warning(capsys):
    values = _flag_values()
    values(["cmd", "--frames=8"])
    assert command_line.renamed_flag("num_frames", "frames", values) == 8
    assert "--frames is deprecated: use --num_frames." in capsys.readouterr().err
    values(["cmd", "--frames=8", "--num_frames=4"])
    with pytest.raises(app.UsageError, match=r"--frames=8 \(deprecated\) and --num_frames=4"):
        command_line.renamed_flag("num_frames", "frames", values)
    values = _flag_values()
    values(["cmd", "--num_frames=4"])
    assert command_line.renamed_flag("num_frames", "frames", values) == 4
    assert capsys.readouterr().err == ""


def test_help_inside_a_flagfile_is_help(tmp_path):
    inner = tmp_path / "inner.cfg"
    inner.write_text("--help\n")
    outer = tmp_path / "outer.cfg"
    outer.write_text(f"--num_frames=8\n--flagfile={inner}\n")
    values = _flag_values()
    assert command_line.wants_help(["cmd", f"--flagfile={outer}"], values) == "short"
    assert command_line.wants_help(["cmd", f"--flagfile={outer}", "--helpfull"], values) == "short"
    assert command_line.wants_help(["cmd", "--num_frames=8"], values) is None
    # A flagfile that cannot be read is no help request; the parser then names it.
    assert command_line.wants_help(["cmd", f"--flagfile={tmp_path / 'nope.cfg'}"], values) is None
    with pytest.raises(app.UsageError, match="nope.cfg"):
        command_line.parse_flags(["cmd", f"--flagfile={tmp_path / 'nope.cfg'}"], values)


def test_noise_is_cpp_log_lines_and_terminal_codes():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796102809.521369   12725 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1796102819.281857   12725 cuda_platform.cc:52] failed call to cuInit\n"
        "[warmup] epoch 1/2\n"
        "phase 40%\r phase 80%\n"
        "\x1b[32mok\x1b[0m\n"
        "Converted 12 of 12 videos\n"
    )
    assert console_output.noise(text) == [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796102809.521369   12725 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796102819.281857   12725 cuda_platform.cc:52] failed call to cuInit",
        repr("phase 40%\r phase 80%"),
        repr("\x1b[32mok\x1b[0m"),
    ]


def test_beam_pipeline_options_are_told_from_unknown_arguments():
    known = [
        "--runner=DirectRunner",
        "--direct_num_workers",
        "2",
        "--direct_running_mode=in_memory",
    ]
    assert pipeline_args.unknown_pipeline_args(known) == []
    assert pipeline_args.unknown_pipeline_args([*known, "--holdout=0.2", "stray"]) == [
        "--holdout=0.2",
        "stray",
    ]
    with pytest.raises(ValueError, match="direct_running_mode"):
        pipeline_args.unknown_pipeline_args(["--direct_running_mode=sideways"])
    assert {"runner", "temp_location", "flink_master"} <= set(pipeline_args.pipeline_option_names())


# Module -> (a flag its --help lists, a misspelt flag, the closest flag the error names,
# arguments the misspelt run gets before it: required flags, so the typo is the only problem).
ENTRY_POINTS = {
    "pipelines.make_tfrecords": ("--holdout_fraction", "--holdout=0.2", "--holdout_fraction",
                                 ["--input_dir=videos", "--output_dir=out"]),
    "pipelines.make_synthetic": ("--videos_per_class", "--video_per_class=3",
                                 "--videos_per_class", ["--output_dir=out"]),
    "pipelines.demo": ("--workdir", "--workdirr=out", "--workdir", []),
    "stfusion_tf.train": ("--workspace", "--num_frame=8", "--num_frames", ["--workspace=ws"]),
    "stfusion_tf.study": ("--records_dirs", "--finetunee", "--finetune", ["--output_dir=out"]),
    "stfusion_tf.describe": ("--crop_size", "--num_frame=8", "--num_frames", []),
    "stfusion_tf.export": ("--serving_root", "--checkpiont=ckpt", "--checkpoint",
                           ["--serving_root=out", "--model_name=m"]),
    "stfusion_tf.predict": ("--num_clips", "--topk=3", "--top_k", ["--model=m", "v.mp4"]),
    "stfusion_tf.serving_client": ("--model_card", "--protocoll=grpc", "--protocol",
                                   ["--model_card=c.json", "--model_name=m", "v.mp4"]),
    "stfusion_tf.report_page": ("--records_dir", "--record_dir=r", "--records_dir",
                                ["--workspace=ws"]),
    "tfrecords_tools.inspect": ("--validate", "--validat", "--validate", ["examples"]),
    "tfrecords_tools.stats": ("--json", "--jsonn", "--json", ["examples"]),
    "tfrecords_tools.validate": ("--progress", "--progres", "--progress", ["examples"]),
    "tfrecords_tools.compare": ("--max_videos", "--max_video=3", "--max_videos", ["a", "b"]),
    "tfrecords_tools.contact_sheet": ("--thumb_height", "--thumb_heigth=9", "--thumb_height",
                                      ["--out=sheet.png", "examples"]),
}  # fmt: skip


_MAIN = 'if __name__ == "__main__":'


def test_every_entry_point_is_listed():
    """Every module of the three packages with a ``__main__`` block is in ENTRY_POINTS."""
    found = set()
    for package in ("tfrecords_tools", "pipelines", "stfusion_tf"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                path = os.path.join(folder, name)
                if name.endswith(".py") and _MAIN in Path(path).read_text(encoding="utf-8"):
                    module = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
                    found.add(module)
    assert found == set(ENTRY_POINTS)


def _start(module: str, args: list[str], cwd) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str, set[str]]:
    """Exit status, stdout, stderr without ``-X importtime``'s lines, and the modules those
    lines name."""
    out, err = process.communicate(timeout=300)
    lines = err.splitlines(keepends=True)
    report = [line for line in lines if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[1].strip() for line in report}
    rest = "".join(line for line in lines if not line.startswith("import time:"))
    return process.returncode, out, rest, imported


# Seconds each to import; --help and a misspelt flag need none of them.
HEAVY = {"tensorflow", "keras", "apache_beam"}
# Its usage error for an argument it does not define asks Beam's registry of pipeline options
# (imported quietly: with stderr silenced, so -X importtime cannot report it).
CONSULTS_BEAM = {"pipelines.make_tfrecords"}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_and_a_misspelt_flag(module, tmp_path):
    own_flag, misspelt, closest, args = ENTRY_POINTS[module]
    help_dir, typo_dir = tmp_path / "help", tmp_path / "typo"
    help_dir.mkdir()
    typo_dir.mkdir()
    processes = [
        _start(module, [*args, "--help"], help_dir),  # --help wins over everything else
        _start(module, [*args, misspelt], typo_dir),
    ]
    (help_rc, help_out, help_err, help_imports), (rc, out, err, imports) = (
        _finish(p) for p in processes
    )

    assert help_rc == 0, help_err
    name = own_flag.removeprefix("--")
    assert f"--{name}:" in help_out or f"--[no]{name}:" in help_out, help_out  # absl's layout
    assert rc == 2, err
    typo = misspelt.split("=")[0]
    errors = [line for line in err.splitlines() if line.startswith(f"{module}: error:")]
    assert len(errors) == 1, err
    assert errors[0].startswith(
        f"{module}: error: unknown flag {typo} (did you mean {closest}?)"
    ), err
    assert "Traceback" not in err and out == ""
    assert list(help_dir.iterdir()) == [] and list(typo_dir.iterdir()) == []
    assert help_imports & HEAVY == set()
    if module not in CONSULTS_BEAM:
        assert imports & HEAVY == set()
