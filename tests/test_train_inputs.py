"""What training does with inputs that do not fit: damaged records (refused before a run by the
shards' SHA-256, named when a phase reads one), checkpoints of other labels or shapes, flag
values out of range, and clip flags that upsample or pad the stored frames. Each case is one
line that names the file and says what to do, on real records of the synthetic dataset,
corrupted in a copy."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from absl import flags

from stfusion_tf import data, train
from stfusion_tf.training import damaged_records
from stfusion_tf.training.errors import RunInputError
from tests import commands, console_output
from tests.test_train_cli import _flags, _setup_error, flagfile, records
from tfrecords_tools import format as fmt
from tfrecords_tools import record_checks, tfrecord_io

__all__ = ["flagfile", "records"]  # module fixtures of test_train_cli, used here too

# One step of the warm-up: enough for the input pipeline to read every train record.
ONE_STEP = ("--phases=warmup", "--warmup_epochs=1", "--steps_per_epoch=1")


def _copy(records, tmp_path) -> str:
    copy = str(tmp_path / "examples")
    shutil.copytree(records, copy)
    return copy


def _shard(records_dir: str) -> str:
    """The one train shard (its name holds a hash of its bytes)."""
    (path,) = data.split_files(records_dir, "train")
    return path


def _base(flagfile, records_dir, workspace):
    return (f"--flagfile={flagfile}", f"--workspace={workspace}", f"--records_dir={records_dir}")


def _flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _rewrite_frames(path: str, damage, records=None) -> None:
    """Rewrites the shard with ``damage(frame)`` applied to every frame of the records whose
    index is in ``records`` (all if None), framed with valid CRCs, at the same size."""
    payloads = [payload for _, payload in record_checks.read_records(path)]
    out = []
    for index, payload in enumerate(payloads):
        record = fmt.deserialize(payload)
        if records is None or index in records:
            record.frames = [damage(frame) for frame in record.frames]
        out.append(fmt.serialize(record))
    size = os.path.getsize(path)
    tfrecord_io.write_tfrecord_file(path, out)
    assert os.path.getsize(path) == size


def _no_start_marker(frame: bytes) -> bytes:
    return b"\0\0" + frame[2:]


def _scrambled_scan(frame: bytes) -> bytes:
    """The entropy-coded data after the start of scan overwritten: the JPEG still decodes (into
    wrong pixels), and only a checksum of the bytes shows it."""
    start = frame.index(b"\xff\xda") + 20
    return frame[:start] + b"\x55" * (len(frame) - 2 - start) + frame[-2:]


@pytest.mark.parametrize(
    "flag, must",
    [
        ("--shuffle_buffer=-1", "must be >= 1"),
        ("--eval_batch_size=0", "must be >= 1"),
        ("--test_num_crops=2", "must be 1 or 3"),
        ("--holdout_num_clips=0", "must be >= 1"),
        ("--bn_recalibration_batches=-1", "must be >= 0"),
        ("--export_version=-1", "must be >= 0"),
        ("--momentum=1", "must be in [0, 1)"),
        ("--init_drop_probability=1", "must be in (0, 1)"),
        ("--lr_decay_epochs=2,x", "list of ints > 0"),
        ("--pixel_std=0.2,0,0.2", "numbers > 0"),
    ],
)
def test_flag_values_are_refused_as_the_flags_are_parsed(flag, must):
    with pytest.raises(
        flags.IllegalFlagValueError, match=rf"{flag.split('=')[0]}.*{re.escape(must)}"
    ):
        _flags(flag)


def test_a_shard_changed_after_its_check_is_refused_before_training(records, flagfile, tmp_path):
    copy = _copy(records, tmp_path)
    base = _base(flagfile, copy, tmp_path / "ws")
    train.build_context(_flags(*base, *ONE_STEP))  # verified: remembered in the workspace
    verified = tmp_path / "ws" / "train" / damaged_records.VERIFIED_RECORDS
    assert list(json.loads(verified.read_text())) == [_shard(copy)]

    _flip_byte(_shard(copy), 80_000)  # same size, a new modification time
    message = _setup_error(*base, *ONE_STEP)
    assert f"Damaged shard {_shard(copy)}, record " in message
    assert "CRC32C mismatch" in message and "inspect --validate" in message
    assert not (tmp_path / "ws" / "train" / "warmup").exists()


def test_a_second_workspace_on_the_same_records_does_not_read_them_again(
    records, flagfile, tmp_path, monkeypatch
):
    """A study runs every dataset and seed in one process, each in a new workspace: the shards
    are hashed by the first run only, and each workspace still remembers them."""
    copy = _copy(records, tmp_path)
    hashed = []
    sha256 = damaged_records._sha256
    monkeypatch.setattr(damaged_records, "_sha256", lambda p: hashed.append(p) or sha256(p))
    for workspace in ("a", "b"):
        train.build_context(_flags(*_base(flagfile, copy, tmp_path / workspace), *ONE_STEP))
        verified = tmp_path / workspace / "train" / damaged_records.VERIFIED_RECORDS
        assert list(json.loads(verified.read_text())) == [_shard(copy)]
    assert hashed == [_shard(copy)]
    _flip_byte(_shard(copy), 80_000)  # same size, a new modification time: read again
    with pytest.raises(RunInputError, match="Damaged shard"):
        train.build_context(_flags(*_base(flagfile, copy, tmp_path / "c"), *ONE_STEP))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (_no_start_marker, r"record 5 \(byte \d+, video '.+\.mp4'\): frame 0 is not a JPEG"),
        (_scrambled_scan, "its SHA-256 is not the one its manifest lists"),
    ],
)
def test_a_record_rewritten_with_valid_crcs_is_refused_naming_it(
    records, flagfile, tmp_path, damage, expected
):
    copy = _copy(records, tmp_path)
    _rewrite_frames(_shard(copy), damage, records={5})
    message = _setup_error(*_base(flagfile, copy, tmp_path / "ws"), *ONE_STEP)
    assert os.path.basename(_shard(copy)) in message
    assert re.search(expected, message), message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda path: _flip_byte(path, 80_000), r"record \d+: corrupted record data at byte"),
        (
            lambda path: _rewrite_frames(path, _no_start_marker),
            r"record 0 \(byte 0, video '.+\.mp4'\): frame 0 is not a JPEG",
        ),
    ],
    ids=["crc", "jpeg"],
)
def test_a_record_damaged_during_the_run_stops_it_naming_the_record(
    records, flagfile, tmp_path, damage, expected
):
    """The input pipeline's own errors name no file (a DataLossError at a byte offset, a JPEG
    decoder error): the run names the shard, the record and its video."""
    copy = _copy(records, tmp_path)
    setup = train.build_context(_flags(*_base(flagfile, copy, tmp_path / "ws"), *ONE_STEP))
    damage(_shard(copy))
    with pytest.raises(damaged_records.DamagedRecordError) as error:
        train.run_phases(*setup)
    assert error.value.path == _shard(copy)
    assert re.search(expected, str(error.value)), str(error.value)
    assert "\n" not in str(error.value) and "inspect --validate" in str(error.value)


def test_the_command_line_prints_a_damaged_record_in_one_line(records, tmp_path, flagfile, capfd):
    """Records converted without checksums (an older manifest): the damage shows only when the
    warm-up reads it; one line, exit 1, no traceback, no C++ log line (the command in the test's
    process, tests/commands.py; as a subprocess in tests/test_study.py)."""
    copy = _copy(records, tmp_path)
    manifest_path = fmt.manifest_path(copy, "train")
    manifest = json.loads(open(manifest_path).read())
    for shard in manifest["shards"]:
        del shard["sha256"]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    _flip_byte(_shard(copy), 80_000)
    finished = commands.run(
        capfd,
        "stfusion_tf.train",
        *_base(flagfile, copy, tmp_path / "ws"),
        *ONE_STEP,
        "--noverbose",
    )
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert finished.stderr.startswith("stfusion_tf.train: error: Damaged shard ")
    assert finished.stderr.count("\n") == 1 and "Traceback" not in finished.stderr
    assert console_output.noise(finished.stdout + finished.stderr) == []


def test_checkpoints_of_other_labels_or_shapes_are_refused_in_one_line(records, flagfile, tmp_path):
    workspace = tmp_path / "ws"
    train.run(_flags(*_base(flagfile, records, workspace), *ONE_STEP))
    swapped = _copy(records, tmp_path)
    names = data.class_names(records)
    with open(os.path.join(swapped, fmt.LABEL_MAP_FILENAME), "w") as f:
        f.write("".join(f"{n}\n" for n in [names[1], names[0], *names[2:]]))

    # Resuming (or continuing) the workspace on records labelled in another order.
    message = _setup_error(*_base(flagfile, swapped, workspace), "--phases=warmup,search")
    assert f"label 0 is '{names[0]}' in one and '{names[1]}'" in message
    assert os.path.join(str(workspace), "train", "warmup", "checkpoints") in message

    # --init_checkpoint: its labels up front (unless the classifier is skipped), its shapes
    # when the warm-up has built its network, before a step: RunInputError, one line.
    init = f"--init_checkpoint={workspace}/train/warmup"
    message = _setup_error(*_base(flagfile, swapped, tmp_path / "a"), *ONE_STEP, init)
    assert "label vocabulary" in message and "--init_skip=predictions" in message
    with pytest.raises(RunInputError, match=r"of another shape: .*--init_skip"):
        train.run(
            _flags(*_base(flagfile, records, tmp_path / "b"), *ONE_STEP, init, "--growth_rate=8")
        )
    assert not (tmp_path / "b" / "train" / "warmup" / "checkpoints").exists()


def test_clips_that_upsample_or_pad_the_stored_frames_are_warned_about(
    records, flagfile, tmp_path, capsys
):
    """The records store frames of 32x40, 12 per video (record_fixtures)."""
    base = _base(flagfile, records, tmp_path / "ws")
    train.build_context(_flags(*base))
    assert "warning" not in capsys.readouterr().err  # crops of 24, clips of 7 frames

    train.build_context(
        _flags(
            *_base(flagfile, records, tmp_path / "ws2"),
            "--crop_size=36",
            "--train_short_sides=36",
            "--eval_short_side=36",
            "--num_frames=7",
        )
    )
    warnings = capsys.readouterr().err.splitlines()
    upsampled = [w for w in warnings if "upsampled" in w]
    padded = [w for w in warnings if "padding" in w]
    # One line per split the phases read (train, holdout, test), each kind.
    assert len(upsampled) == len(padded) == 3 and len(warnings) == 6
    assert all(w.startswith("stfusion_tf.train: warning: split ") for w in warnings)
    assert (
        "split 'train': 12 of 12 videos are stored with a short side under the crop"
        in (upsampled[0])
    )
    assert "under the crop (--crop_size=36; smallest 32 px)" in upsampled[0]
    assert "--short_side=36" in upsampled[0]
    assert "shortest video has 12 frames (median 12), fewer than a clip spans (13: " in padded[0]
