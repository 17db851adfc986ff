"""``python -m tfrecords_tools.compare`` on real conversions of real videos that differ in one way
each: an option, a removed video, a video moved to another class folder, a failure."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from absl import flags

from pipelines import convert, synthetic
from tests import video_fixtures
from tfrecords_tools import compare, manifest
from tfrecords_tools import fingerprint as fingerprint_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = convert.ConvertOptions(short_side=16)
REMOVED = "move_left/move_left_0001.mp4"
MOVED = "move_down/move_down_0000.mp4"  # to move_up/ in the "relabelled" dataset
BROKEN = "move_right/broken.mp4"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """4 classes x 2 real H.264 videos of 6 frames, and one broken file (a failure record)."""
    root = str(tmp_path_factory.mktemp("videos") / "a")
    synthetic.write_dataset(root, video_fixtures.tiny_spec(videos_per_class=2, frames=6))
    video_fixtures.write_broken_video(os.path.join(root, BROKEN), "truncated")
    return root


def _convert(root, output_dir, options=OPTIONS):
    convert.run_conversion("folder", root, str(output_dir), num_shards=1, options=options)
    return str(output_dir)


def _variant(videos, tmp_path_factory, name, edit):
    """A copy of the videos under another root, changed by ``edit(root)``, converted."""
    root = str(tmp_path_factory.mktemp("variant") / name)
    shutil.copytree(videos, root)
    edit(root)
    return _convert(root, tmp_path_factory.mktemp(f"records_{name}"))


@pytest.fixture(scope="module")
def base(videos, tmp_path_factory):
    return _convert(videos, tmp_path_factory.mktemp("records_base"))


def _run(*args):
    """``compare.run`` with its flags parsed from ``args`` into a private FlagValues."""
    values = flags.FlagValues()
    compare.define_flags(values)
    return compare.run(values(["compare", *args]), flag_values=values)


def _diff(a, b):
    return compare.compare_datasets(compare.load_dataset(a), compare.load_dataset(b))


def test_the_same_videos_elsewhere_are_the_same_dataset(videos, base, tmp_path_factory, capsys):
    """Another copy of the videos, converted again: byte-identical shards, the same fingerprint
    (where the videos lie is not part of it), exit 0."""
    other = _variant(videos, tmp_path_factory, "copy", lambda root: None)
    assert fingerprint_lib.read_fingerprint(other) == fingerprint_lib.read_fingerprint(base)
    (shard,) = [os.path.basename(p) for p in manifest.split_shards(base, "train")]
    assert [os.path.basename(p) for p in manifest.split_shards(other, "train")] == [shard]
    assert (
        open(os.path.join(base, shard), "rb").read()
        == open(os.path.join(other, shard), "rb").read()
    )
    assert _run(base, other) == compare.IDENTICAL
    out = capsys.readouterr().out
    assert out.startswith(f"identical: dataset {fingerprint_lib.read_fingerprint(base)['id']}")


def test_one_option_changed_is_named_and_nothing_else_differs(videos, base, tmp_path, capsys):
    other = _convert(videos, tmp_path, convert.ConvertOptions(short_side=16, jpeg_quality=50))
    diff = _diff(base, other)
    assert not diff["identical"]
    assert diff["fields"] == [{"name": "options.jpeg_quality", "a": 90, "b": 50}]
    assert diff["labels"] is None
    assert diff["splits"]["train"]["same"]  # the same videos, labels and failures
    assert _run(base, other) == compare.DIFFERENT
    out = capsys.readouterr().out
    assert "options.jpeg_quality: 90 -> 50" in out
    assert "split train: same videos and failures (8 videos)" in out


def test_a_removed_video_is_named(videos, base, tmp_path_factory, capsys):
    other = _variant(videos, tmp_path_factory, "removed", lambda r: os.remove(f"{r}/{REMOVED}"))
    split = _diff(base, other)["splits"]["train"]
    assert split["only_in_a"] == {"count": 1, "videos": [{"path": REMOVED, "label": "move_left"}]}
    assert split["only_in_b"]["count"] == split["label_changes"]["count"] == 0
    assert split["num_examples"] == {"a": 8, "b": 7}
    assert _diff(base, other)["fields"] == []
    assert _run(base, other) == compare.DIFFERENT
    out = capsys.readouterr().out
    assert f"only in A (1):\n      {REMOVED} (move_left)" in out


def test_a_video_moved_to_another_class_is_a_label_change(videos, base, tmp_path_factory):
    """The same file under another class folder (and the broken file deleted): a label change and
    a failure only in A, not a video removed and another added."""
    moved = MOVED.replace("move_down/", "move_up/")

    def edit(root):
        os.rename(f"{root}/{MOVED}", f"{root}/{moved}")
        os.remove(f"{root}/{BROKEN}")

    other = _variant(videos, tmp_path_factory, "relabelled", edit)
    diff = _diff(base, other)
    split = diff["splits"]["train"]
    assert split["label_changes"]["videos"] == [
        {"a": {"path": MOVED, "label": "move_down"}, "b": {"path": moved, "label": "move_up"}}
    ]
    assert split["only_in_a"]["count"] == split["only_in_b"]["count"] == 0
    assert split["failures_only_in_a"]["videos"][0]["path"] == BROKEN
    assert "not a readable video" in split["failures_only_in_a"]["videos"][0]["reason"]
    assert split["failures_only_in_b"]["count"] == 0
    text = compare.format_report(diff)
    assert f"{MOVED} (move_down) -> {moved} (move_up)" in text
    assert f"failed only in A (1):\n      {BROKEN}: " in text


def test_a_new_class_is_a_label_vocabulary_difference(videos, base, tmp_path_factory, capsys):
    def edit(root):
        os.mkdir(f"{root}/move_zz")
        shutil.copy(f"{root}/{REMOVED}", f"{root}/move_zz/new.mp4")

    other = _variant(videos, tmp_path_factory, "new_class", edit)
    diff = _diff(base, other)
    assert diff["labels"] == {
        "first_difference": {"index": 4, "a": None, "b": "move_zz"},
        "removed": [],
        "added": ["move_zz"],
    }
    assert {f["name"] for f in diff["fields"]} == {"labels.num_classes", "labels.sha256"}
    assert diff["splits"]["train"]["only_in_b"]["videos"] == [
        {"path": "move_zz/new.mp4", "label": "move_zz"}
    ]
    assert _run(base, other) == compare.DIFFERENT
    out = capsys.readouterr().out
    assert "labels.num_classes: 4 -> 5" in out
    assert 'labels: first difference at index 4: null in A, "move_zz" in B' in out
    assert "labels added in B: move_zz" in out


def test_a_video_in_another_split_is_listed_once_as_a_move():
    def dataset(videos):
        return compare.Dataset("x", {}, None, videos, {})

    a = dataset({"train": {"c/1.mp4": "c", "c/2.mp4": "c"}, "holdout": {"c/3.mp4": "c"}})
    b = dataset({"train": {"c/1.mp4": "c"}, "holdout": {"c/2.mp4": "c", "c/3.mp4": "c"}})
    assert compare.split_moves(a, b) == [{"path": "c/2.mp4", "a": "train", "b": "holdout"}]
    diff = compare.diff_videos(a.videos["train"], b.videos["train"], exclude={"c/2.mp4"})
    assert diff["only_in_a"]["count"] == 0


def test_same_id_with_another_label_and_the_label_map_differences():
    """Datasets whose lists name a video by id (CSV layouts) keep its id when relabelled."""
    diff = compare.diff_videos(
        {"v1": "a", "v2": "b", "v3": "a"}, {"v1": "a", "v2": "c", "v4": "a"}, limit=10
    )
    assert diff["label_changes"]["videos"] == [
        {"a": {"path": "v2", "label": "b"}, "b": {"path": "v2", "label": "c"}}
    ]
    assert diff["only_in_a"]["videos"] == [{"path": "v3", "label": "a"}]
    assert diff["only_in_b"]["videos"] == [{"path": "v4", "label": "a"}]
    assert compare.diff_labels(["a", "b", "c"], ["a", "c", "b", "d"]) == {
        "first_difference": {"index": 1, "a": "b", "b": "c"},
        "removed": [],
        "added": ["d"],
    }
    assert compare.diff_labels(["a", "b"], ["a"])["first_difference"] == {
        "index": 1,
        "a": "b",
        "b": None,
    }
    assert compare.diff_labels(["a"], ["a"]) is None


def test_long_lists_are_counted_in_full_and_cut_at_max_videos():
    diff = compare.diff_videos({f"x/{i}.mp4": "x" for i in range(25)}, {}, limit=3)
    assert diff["only_in_a"]["count"] == 25
    assert [v["path"] for v in diff["only_in_a"]["videos"]] == ["x/0.mp4", "x/1.mp4", "x/10.mp4"]


def test_cli_json_help_and_usage_errors(base, videos, tmp_path):
    """The real command: JSON on stdout, the exit codes in --help, exit 2 with what to do."""

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "tfrecords_tools.compare", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
        )

    result = cli("--json", base, base)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["identical"] is True

    help_text = cli("--help").stdout
    assert "0 when the datasets are identical, 1 when they differ, 2 on a usage error" in " ".join(
        help_text.split()
    )

    missing = cli(base, str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "is not a folder" in missing.stderr and "make_tfrecords" in missing.stderr

    not_converted = cli(base, videos)
    assert not_converted.returncode == 2
    assert "No fingerprint.json in" in not_converted.stderr
    assert "python -m pipelines.make_tfrecords" in not_converted.stderr

    one = cli(base)
    assert one.returncode == 2
    assert "Give two records folders" in one.stderr
