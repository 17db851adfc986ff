"""A kill at any moment of a conversion's commit leaves the old split or the new one (issue 16),
with real files: the tiny synthetic videos converted by the real Beam job, then the real commit
(``pipelines.commit_splits``) stopped after each of its steps, as a SIGKILL stops it (no
``finally`` runs, the staging folder and its journal stay).

The old conversion: train 8 videos and test 4, two shards each. The new one: a holdout carved
from train (train 4, holdout 4, a split the folder did not have) and test the same 4 videos in
one shard, whose report files have the bytes, so the names, of the old ones. Also: a folder
written before names held hashes is replaced whole, and a killed commit whose new file went
missing is finished where it can be and undone where not, without a fingerprint.
"""

import json
import logging
import os
import shutil

import pytest

from pipelines import commit_splits, convert, synthetic
from tests import video_fixtures
from tfrecords_tools import compare, manifest
from tfrecords_tools import fingerprint as fingerprint_lib
from tfrecords_tools import format as fmt
from tfrecords_tools import inspect as inspect_lib

OPTIONS = convert.ConvertOptions(short_side=32, isolate_decoder=False)
SPLITS = ("train", "test", "holdout")
NEW = {"holdout_fraction": 0.5}


class Killed(BaseException):
    """What a SIGKILL does to the commit: nothing after the kill runs (not even ``finally``)."""


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """train: 4 classes x 2 videos; test: 4 classes x 1 video (6 frames each)."""
    root = str(tmp_path_factory.mktemp("videos"))
    synthetic.write_dataset(
        os.path.join(root, "train"), video_fixtures.tiny_spec(videos_per_class=2, frames=6)
    )
    synthetic.write_dataset(
        os.path.join(root, "test"), video_fixtures.tiny_spec(videos_per_class=1, frames=6, seed=1)
    )
    return root


def _convert(root, output_dir, **kwargs):
    return convert.run_conversion("folder", root, str(output_dir), options=OPTIONS, **kwargs)


@pytest.fixture(scope="module")
def conversions(videos, tmp_path_factory):
    """The old folder, the new folder (converted alone), and the staging folder of the new
    conversion just before its commit, with the commit's other arguments."""
    old = str(tmp_path_factory.mktemp("old"))
    _convert(videos, old, num_shards=2)
    new = str(tmp_path_factory.mktemp("new"))
    snapshot = str(tmp_path_factory.mktemp("staged") / "staging")
    captured = {}
    real_commit = commit_splits.commit

    def snapshot_then_commit(staging_dir, output_dir, *args):
        shutil.copytree(staging_dir, snapshot)
        captured["args"] = args
        real_commit(staging_dir, output_dir, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commit_splits, "commit", snapshot_then_commit)
        _convert(videos, new, **NEW)
    return {"old": old, "new": new, "staged": snapshot, "commit_args": captured["args"]}


def _contents(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def _listed_shards(folder, split):
    """The shard names a split's manifest lists, checked against the folder (None: no
    manifest)."""
    try:
        return [os.path.basename(p) for p in manifest.split_shards(folder, split)]
    except FileNotFoundError:
        return None


def _state(folder, conversions, split):
    """'old' or 'new': which conversion's split every reader sees in ``folder``."""
    seen = _listed_shards(folder, split)
    states = [s for s in ("old", "new") if _listed_shards(conversions[s], split) == seen]
    assert len(states) == 1, f"{split}: {seen} is not the old split or the new one"
    return states[0]


def _check_readers(folder, conversions, expected):
    """Every reader sees each split old or new, whole (``expected``: all of them 'old', all
    'new', or 'either'), and the fingerprint and ``compare`` the old or new dataset (none in the
    middle of the manifest switch)."""
    states = {split: _state(folder, conversions, split) for split in SPLITS}
    if expected != "either":
        assert set(states.values()) == {expected}, states
    report = inspect_lib.inspect_records([folder], validate=True)
    assert report["ok"], report["error"]
    for split, state in states.items():
        if _listed_shards(conversions[state], split) is None:
            assert split not in report["splits"]
            continue
        listed = manifest.read_manifest(conversions[state], split)
        assert report["splits"][split]["videos"] == listed["num_examples"], split
    try:
        fingerprint = fingerprint_lib.read_fingerprint(folder)
    except FileNotFoundError:
        assert expected == "either"  # only while the manifests switch
        return
    dataset = compare.load_dataset(folder)
    reference = compare.load_dataset(conversions[expected])
    assert fingerprint["id"] == reference.fingerprint["id"]
    assert compare.compare_datasets(dataset, reference)["identical"]
    assert dataset.videos == reference.videos and dataset.failures == reference.failures


def _kill_after(monkeypatch, name, calls=1):
    """Kills the commit just after the ``calls``-th call of ``commit_splits.<name>`` ends."""
    original, done = getattr(commit_splits, name), []

    def then_kill(*args, **kwargs):
        result = original(*args, **kwargs)
        done.append(name)
        if len(done) == calls:
            raise Killed(name)
        return result

    monkeypatch.setattr(commit_splits, name, then_kill)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _remove_debris(folder):
    """``remove_debris``, the next conversion's first step; returns its log lines."""
    handler, logger = _Records(), logging.getLogger("stfusion")
    logger.addHandler(handler)
    try:
        commit_splits.remove_debris(folder)
    finally:
        logger.removeHandler(handler)
    return handler.messages


@pytest.mark.parametrize(
    "step, calls, at_kill, after",
    [
        ("_move", 1, "old", "old"),  # the first split's new files are in
        ("move_new_files", 1, "old", "old"),  # every new file is in, no manifest switched
        ("switch_manifest", 1, "either", "new"),  # one manifest switched, no fingerprint
        ("switch_manifests", 1, "new", "new"),  # every manifest and the fingerprint are new
        ("remove_old_files", 1, "new", "new"),  # the old files are gone, not the staging folder
    ],
)
def test_a_kill_at_each_step_of_the_commit_leaves_the_old_split_or_the_new_one(
    conversions, tmp_path, monkeypatch, step, calls, at_kill, after
):
    folder = str(tmp_path / "records")
    shutil.copytree(conversions["old"], folder)
    staging = os.path.join(folder, commit_splits.STAGING_PREFIX + "0123abcd")
    shutil.copytree(conversions["staged"], staging)
    _kill_after(monkeypatch, step, calls)
    with pytest.raises(Killed):
        commit_splits.commit(staging, folder, *conversions["commit_args"])
    monkeypatch.undo()
    assert os.path.exists(os.path.join(staging, commit_splits.JOURNAL_FILENAME))
    _check_readers(folder, conversions, at_kill)

    log = _remove_debris(folder)
    word = {"old": "undone", "new": "finished"}[after]
    assert any(f"its commit was {word}" in m and "0123abcd" in m for m in log), log
    assert _contents(folder) == _contents(conversions[after])  # no staging, nothing stale
    _check_readers(folder, conversions, after)


def test_a_killed_conversion_is_finished_by_the_next_one(
    conversions, videos, tmp_path, monkeypatch
):
    """A real conversion killed between two manifest switches (its ``finally`` does not run),
    then the next conversion: each split was old or new, whole; then the new folder, exactly."""
    folder = str(tmp_path / "records")
    shutil.copytree(conversions["old"], folder)
    _kill_after(monkeypatch, "switch_manifest", 2)
    monkeypatch.setattr(commit_splits, "discard_staging", lambda *args: None)  # no finally
    with pytest.raises(Killed):
        _convert(videos, folder, **NEW)
    monkeypatch.undo()
    assert [n for n in os.listdir(folder) if n.startswith(commit_splits.STAGING_PREFIX)]
    _check_readers(folder, conversions, "either")
    _convert(videos, folder, **NEW)
    new = _contents(conversions["new"])
    got = _contents(folder)
    assert sorted(got) == sorted(new)  # no staging folder, no stale file
    runtime = [n for n in new if n.endswith(".manifest.json")]  # pipeline_runtime_s differs
    assert {n: got[n] for n in got if n not in runtime} == {
        n: new[n] for n in new if n not in runtime
    }


def test_a_commit_stopped_by_an_error_is_undone_before_the_conversion_raises(
    conversions, videos, tmp_path, monkeypatch
):
    """An exception (a full disk) while the new files move in: the driver undoes the commit
    itself, so the folder is the old one, byte for byte, and holds no staging folder."""
    folder = str(tmp_path / "records")
    shutil.copytree(conversions["old"], folder)
    original = commit_splits._move

    def full_disk_on_second_split(staging_dir, output_dir, names):
        if any(n.startswith("test") for n in names):
            raise OSError(28, "No space left on device")
        original(staging_dir, output_dir, names)

    monkeypatch.setattr(commit_splits, "_move", full_disk_on_second_split)
    with pytest.raises(OSError, match="No space left"):
        _convert(videos, folder, **NEW)
    assert _contents(folder) == _contents(conversions["old"])


def test_report_files_are_named_by_their_content_and_listed_in_the_manifest(conversions):
    old, new = conversions["old"], conversions["new"]
    for split in ("train", "test"):
        files = manifest.report_files(manifest.read_manifest(old, split), split)
        assert sorted(files) == ["failures", "videos"]
        for kind, name in files.items():
            assert name.startswith(f"{split}.{kind}-") and name.endswith(".jsonl")
    # The same videos give the same bytes, so the same names, in both conversions.
    assert manifest.report_files(manifest.read_manifest(old, "test"), "test") == (
        manifest.report_files(manifest.read_manifest(new, "test"), "test")
    )
    # A manifest written before report files were listed names the fixed names of its time.
    assert manifest.report_path("d", "train", "failures", {"shards": []}) == os.path.join(
        "d", "train.failures.jsonl"
    )
    assert all(fmt.SHARD_NAME.match(n) for n in os.listdir(new) if n.endswith(".tfrecord"))


def _staged_into(conversions, folder):
    staging = os.path.join(folder, commit_splits.STAGING_PREFIX + "0123abcd")
    shutil.copytree(conversions["staged"], staging)
    return staging


def test_a_folder_of_unhashed_names_is_replaced_whole(conversions, tmp_path):
    """A folder written before names held hashes (fixed names, manifests without report_files)
    is a valid old split, and the commit leaves exactly the new folder."""
    folder = str(tmp_path / "records")
    shutil.copytree(conversions["old"], folder)
    for split in ("train", "test"):
        listed = manifest.read_manifest(folder, split)
        for entry in listed["shards"]:
            unhashed = fmt.SHARD_NAME.sub(
                r"\g<split>-\g<index>-of-\g<count>.tfrecord", entry["path"]
            )
            os.rename(os.path.join(folder, entry["path"]), os.path.join(folder, unhashed))
            entry["path"] = unhashed
        for kind, name in listed.pop("report_files").items():
            unhashed = fmt.unhashed_report_name(split, kind)
            os.rename(os.path.join(folder, name), os.path.join(folder, unhashed))
        with open(fmt.manifest_path(folder, split), "w") as f:
            json.dump(listed, f)
    assert _listed_shards(folder, "train") == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
    ]
    assert "train.failures.jsonl" in os.listdir(folder)
    commit_splits.commit(_staged_into(conversions, folder), folder, *conversions["commit_args"])
    assert _contents(folder) == _contents(conversions["new"])


def test_a_new_file_gone_after_the_kill_leaves_its_split_old_and_no_fingerprint(
    conversions, tmp_path, monkeypatch
):
    """Killed after the first manifest switched, then a new file of a split still old removed
    by hand: that split cannot go forward, so it goes back, the others forward; the folder mixes
    two conversions and has no fingerprint.json, which the log line says."""
    folder = str(tmp_path / "records")
    shutil.copytree(conversions["old"], folder)
    staging = _staged_into(conversions, folder)
    _kill_after(monkeypatch, "switch_manifest", 1)
    with pytest.raises(Killed):
        commit_splits.commit(staging, folder, *conversions["commit_args"])
    monkeypatch.undo()
    states = {split: _state(folder, conversions, split) for split in SPLITS}
    old_split = next(s for s in ("test", "holdout") if states[s] == "old")
    gone = _listed_shards(conversions["new"], old_split)[0]
    os.remove(os.path.join(folder, gone))
    log = _remove_debris(folder)
    assert any("no fingerprint.json" in m for m in log), log
    # The other splits went forward, whole.
    assert {split: _state(folder, conversions, split) for split in SPLITS} == {
        split: "old" if split == old_split else "new" for split in SPLITS
    }
    assert not os.path.exists(os.path.join(folder, fingerprint_lib.FINGERPRINT_FILENAME))
    assert not [n for n in os.listdir(folder) if n.startswith(".")]
