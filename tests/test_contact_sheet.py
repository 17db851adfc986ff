"""tfrecords_tools.contact_sheet on tiny shards written here (not by the Beam job); the command
in the test's process (tests/commands.py)."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from tests import commands
from tests.test_inspect import make_record, write_shard
from tfrecords_tools import contact_sheet, video_io


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards, 7 videos of 32x40 frames; the video of label 1 (seed 2) has 9 frames."""
    directory = tmp_path_factory.mktemp("examples")
    first = [make_record(0, 6, seed=1), make_record(1, 9, seed=2), make_record(2, 6, seed=3)]
    second = [make_record(i % 3, 5 + i, seed=10 + i) for i in range(4)]
    write_shard(str(directory / "train-00000-of-00002.tfrecord"), first)
    write_shard(str(directory / "train-00001-of-00002.tfrecord"), second)
    return str(directory)


def test_frame_indices_are_evenly_spaced_first_to_last():
    assert contact_sheet.frame_indices(32, 8) == [0, 4, 9, 13, 18, 22, 27, 31]
    assert contact_sheet.frame_indices(9, 4) == [0, 3, 5, 8]
    assert contact_sheet.frame_indices(3, 8) == [0, 1, 2]


def test_sampling_is_seeded_distinct_and_bounded(shards):
    a = contact_sheet.sample_videos([shards], videos=3, seed=0)
    b = contact_sheet.sample_videos([shards], videos=3, seed=0)
    keys = [(s.path, s.index) for s in a]
    assert keys == [(s.path, s.index) for s in b]
    assert len(set(keys)) == 3
    draws = {
        tuple((s.path, s.index) for s in contact_sheet.sample_videos([shards], 3, seed))
        for seed in range(6)
    }
    assert len(draws) > 1
    # Asking for more videos than there are gives all of them, sorted by label.
    everything = contact_sheet.sample_videos([shards], videos=20, seed=0)
    assert len(everything) == 7
    assert [s.record.label_index for s in everything] == sorted(
        s.record.label_index for s in everything
    )
    # scan_records bounds how much is read.
    assert len(contact_sheet.sample_videos([shards], videos=20, seed=0, scan_records=2)) == 2


def test_sheet_has_the_expected_pixel_size_and_shows_the_frames(shards, tmp_path):
    out = str(tmp_path / "sheets" / "sheet.png")
    samples = contact_sheet.write_contact_sheet(
        [shards], out, videos=3, frames=4, seed=0, thumb_height=64
    )
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # 4 columns of 64x80 frames (32x40 scaled by 2), 8 px gaps and margin; each row has an
    # 18 px header and a 14 px caption: 8 + 4 * (80 + 8) wide, 8 + 3 * (18 + 64 + 14 + 8) high.
    assert sheet.shape == (320, 360, 3)
    assert len(samples) == 3
    # The cell of row 1, column 2 is that video's frame at index frame_indices(n, 4)[2].
    record = samples[1].record
    index = contact_sheet.frame_indices(len(record.frames), 4)[2]
    frame = video_io.decode_jpeg(record.frames[index])
    expected = frame.repeat(2, axis=0).repeat(2, axis=1)  # Upscaled with nearest neighbours.
    top, left = 8 + 1 * (18 + 64 + 14 + 8) + 18, 8 + 2 * (80 + 8)
    np.testing.assert_array_equal(sheet[top : top + 64, left : left + 80], expected)
    # Header lines carry text (light pixels on the dark background), the gaps do not.
    header = sheet[8 : 8 + 18, 8:200]
    assert (header.min(axis=-1) > 200).sum() > 20
    assert (sheet[:8] == contact_sheet.BACKGROUND).all()


def test_short_videos_leave_empty_cells(tmp_path):
    path = write_shard(str(tmp_path / "train-00000-of-00001.tfrecord"), [make_record(0, 3)])
    out = str(tmp_path / "sheet.png")
    contact_sheet.write_contact_sheet([path], out, videos=1, frames=5, thumb_height=32)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape == (8 + 18 + 32 + 14 + 8, 8 + 5 * (40 + 8), 3)
    fourth_cell = sheet[8 + 18 : 8 + 18 + 32, 8 + 3 * 48 : 8 + 3 * 48 + 40]
    assert (fourth_cell == contact_sheet.BACKGROUND).all()


def test_a_frame_that_is_not_an_image_is_a_red_cell(tmp_path):
    """The sheet is where a person looks at the data: a damaged frame is shown, not a crash."""
    record = make_record(0, 3)
    frames = list(record.frames)
    frames[1] = b"\x00\x00" + frames[1][2:]  # the JPEG start marker gone
    path = write_shard(
        str(tmp_path / "train-00000-of-00001.tfrecord"),
        [dataclasses.replace(record, frames=frames)],
    )
    out = str(tmp_path / "sheet.png")
    contact_sheet.write_contact_sheet([path], out, videos=1, frames=3, thumb_height=32)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    cells = [sheet[8 + 18 : 8 + 18 + 32, 8 + c * 48 : 8 + c * 48 + 40] for c in range(3)]
    assert (cells[1] == contact_sheet.DAMAGED).all()
    assert not (cells[0] == contact_sheet.DAMAGED).all(axis=-1).any()
    np.testing.assert_array_equal(cells[2], video_io.decode_jpeg(frames[2]))


def test_bad_arguments_are_rejected(shards):
    with pytest.raises(ValueError, match="videos must be >= 1. Received: videos=0"):
        contact_sheet.sample_videos([shards], videos=0, seed=0)
    samples = contact_sheet.sample_videos([shards], videos=1, seed=0)
    with pytest.raises(ValueError, match="Received: frames=0, thumb_height=96"):
        contact_sheet.render_sheet(samples, frames=0)


def test_command_line_writes_the_png(shards, tmp_path, capfd):
    out = str(tmp_path / "cli.png")
    result = commands.run(
        capfd, "tfrecords_tools.contact_sheet", shards, f"--out={out}", "--videos=2",
        "--frames=3", "--thumb_height=32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Wrote {out}: 2 videos")
    assert Image.open(out).size == (8 + 3 * (40 + 8), 8 + 2 * (18 + 32 + 14 + 8))
