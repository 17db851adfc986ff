"""Nothing doubled, nothing silently wrong, from videos to records (issue 16): real conversions of
the project's tiny synthetic videos with the real Beam job.

- Two conversions into one folder: every reader (training's and evaluation's ``split_files``,
  ``inspect``, ``compare``, the fingerprint) sees the second one only, and the staging folder a
  killed conversion left is removed; a shard planted by hand is refused by every reader, naming
  the file.
- A kill at each step of a commit (``pipelines.commit_splits``) leaves, as every reader sees it,
  each split old or new, whole; the next conversion's first step restores the old folder or the
  new one byte for byte, and leaves no staging folder and no stale file.
- Per-video problems are failure records: a file name that is not UTF-8, a still image named
  ``.mp4``; a class left without an example is reported; a class name that cannot be a line of
  ``label_map.txt`` stops the listing before any work.
"""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines import commit_splits, convert, datasets, synthetic
from stfusion_tf import data
from stfusion_tf.preprocessing import PreprocessingSpec
from tests import video_fixtures
from tfrecords_tools import compare, manifest
from tfrecords_tools import format as fmt
from tfrecords_tools import inspect as inspect_lib

OPTIONS = convert.ConvertOptions(short_side=32, isolate_decoder=False)
SPEC = PreprocessingSpec(
    num_frames=2, stride=1, crop_size=16, train_short_sides=(32,), eval_short_side=32
)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """train: 4 classes x 2 videos; test: 4 classes x 1 video (6 frames each)."""
    root = str(tmp_path_factory.mktemp("videos"))
    spec = video_fixtures.tiny_spec(videos_per_class=2, frames=6)
    synthetic.write_dataset(os.path.join(root, "train"), spec)
    test_spec = video_fixtures.tiny_spec(videos_per_class=1, frames=6, seed=1)
    synthetic.write_dataset(os.path.join(root, "test"), test_spec)
    return root


def _convert(root, output_dir, **kwargs):
    return convert.run_conversion("folder", root, str(output_dir), options=OPTIONS, **kwargs)


@pytest.fixture(scope="module")
def converted_twice(videos, tmp_path_factory):
    """Converted with 2 shards a split, then, over a planted staging folder (a killed run's),
    again into the same folder with the default count (1); returns (folder, manifests, log)."""
    output_dir = str(tmp_path_factory.mktemp("records"))
    _convert(videos, output_dir, num_shards=2)
    debris = os.path.join(output_dir, f"{commit_splits.STAGING_PREFIX}killed")
    os.makedirs(debris)
    with open(os.path.join(debris, "0123.tfrecord"), "wb") as f:
        f.write(b"a staged record of a killed conversion")
    handler, logger = _Records(), logging.getLogger("stfusion")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as make_tfrecords sets it
    try:
        manifests = _convert(videos, output_dir)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return output_dir, manifests, [r.getMessage() for r in handler.records]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _eval_videos(records_dir, split):
    """The distinct videos evaluation reads from a split (its ``video_index`` values)."""
    views = data.eval_dataset(data.split_files(records_dir, split), SPEC, 8)
    return {int(i) for batch in views for i in batch[data.VIDEO_INDEX].numpy()}


def test_a_second_conversion_into_one_folder_is_all_any_reader_sees(converted_twice):
    output_dir, manifests, log = converted_twice
    shards = sorted(n for n in os.listdir(output_dir) if n.endswith(fmt.SHARD_SUFFIX))
    assert [n[: -len("-12345678.tfrecord")] for n in shards] == [
        "test-00000-of-00001",
        "train-00000-of-00001",
    ]
    assert not [n for n in os.listdir(output_dir) if n.startswith(".")]
    assert any("staging-killed" in m and "did not finish" in m for m in log), log
    assert any("Removed 2 old file(s) of split 'train'" in m for m in log), log
    report = inspect_lib.inspect_records([output_dir])
    assert report["ok"], report["error"]
    for split, expected in (("train", 8), ("test", 4)):
        assert manifests[split]["num_examples"] == expected
        assert data.split_files(output_dir, split) == [
            os.path.join(output_dir, shards[split == "train"])
        ]
        assert len(_eval_videos(output_dir, split)) == expected
        assert report["splits"][split]["videos"] == expected
    dataset = compare.load_dataset(output_dir)
    assert {s: p["num_examples"] for s, p in dataset.fingerprint["splits"].items()} == {
        "train": 8,
        "test": 4,
    }


@pytest.fixture
def folder_copy(converted_twice, tmp_path):
    output_dir, _, _ = converted_twice
    copy = str(tmp_path / "records")
    shutil.copytree(output_dir, copy)
    return copy


def test_a_shard_the_manifest_does_not_list_is_refused_by_every_reader(folder_copy, capsys):
    planted = os.path.join(folder_copy, "train-00000-of-00003.tfrecord")
    shutil.copy(manifest.split_shards(folder_copy, "train")[0], planted)
    name = os.path.basename(planted)

    error = inspect_lib.inspect_records([folder_copy])["error"]
    assert error["file"] == planted and "unlisted shard(s) " + name in error["problem"]
    error = inspect_lib.inspect_records([fmt.shard_pattern(folder_copy, "train")], validate=True)
    assert error["error"]["file"] == planted
    with pytest.raises(manifest.SplitMismatchError, match=f"unlisted shard.*{name}") as e:
        data.split_files(folder_copy, "train")
    assert e.value.paths == [planted]
    assert data.split_files(folder_copy, "test")  # the other split is whole
    assert compare.run(["compare", folder_copy, folder_copy]) == compare.USAGE_ERROR
    assert name in capsys.readouterr().err


def test_a_listed_shard_cut_or_gone_is_named(folder_copy):
    shard = manifest.split_shards(folder_copy, "test")[0]
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 10)
    with pytest.raises(manifest.SplitMismatchError, match=f"holds {size - 10} bytes where"):
        data.split_files(folder_copy, "test")
    os.remove(shard)
    with pytest.raises(manifest.SplitMismatchError, match="listed shard test-00000.* is missing"):
        data.split_files(folder_copy, "test")
    assert inspect_lib.inspect_records([folder_copy])["error"]["file"] == shard


def test_validate_checks_each_shard_against_the_sha256_its_manifest_lists(folder_copy):
    path = manifest.split_shards(folder_copy, "test")[0]
    listed = manifest.read_manifest(folder_copy, "test")["shards"][0]
    assert listed["sha256"] == inspect_lib.hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(fmt.manifest_path(folder_copy, "test"), "r+") as f:
        content = json.load(f)
        content["shards"][0]["sha256"] = "0" * 64
        f.seek(0)
        f.truncate()
        json.dump(content, f)
    error = inspect_lib.inspect_records([fmt.shard_pattern(folder_copy, "test")], validate=True)
    assert error["error"]["file"] == path and "SHA-256" in error["error"]["problem"]


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """Classes a (2 videos and one whose file name is not UTF-8), b (2 videos), c (only a PNG
    named .mp4), converted with a holdout."""
    root = str(tmp_path_factory.mktemp("awkward"))
    rng = np.random.default_rng(0)
    for i, name in enumerate(("a/v0.mp4", "a/v1.mp4", "b/v0.mp4", "b/v1.mp4")):
        os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
        video_fixtures.write_good_video(os.path.join(root, name), frames=6, seed=i)
    shutil.copy(os.path.join(root, "a", "v0.mp4"), os.fsencode(root) + b"/a/bad\xff.mp4")
    os.makedirs(os.path.join(root, "c"))
    frame = synthetic.render_video(video_fixtures.tiny_spec(frames=2), "move_left", rng)[0]
    Image.fromarray(frame).save(os.path.join(root, "c", "still.mp4"), format="PNG")
    output_dir = str(tmp_path_factory.mktemp("awkward_records"))
    return output_dir, _convert(root, output_dir, holdout_fraction=0.5)


def _failures(output_dir, manifests):
    return {
        f["path"]: f
        for split in manifests
        for path in [manifest.report_path(output_dir, split, "failures")]
        for f in (json.loads(line) for line in open(path))
    }


def test_a_file_name_that_is_not_utf8_is_one_failure_record(awkward):
    output_dir, manifests = awkward
    failure = _failures(output_dir, manifests)["a/bad\\xff.mp4"]
    assert failure["error"] == "RefusedAtListing" and "not valid UTF-8" in failure["reason"]
    # examples + failures = the 6 files found, the other videos converted.
    assert sum(m["num_examples"] + m["num_failures"] for m in manifests.values()) == 6
    assert sum(m["num_examples"] for m in manifests.values()) == 4


def test_a_still_image_named_like_a_video_is_a_failure_not_an_example(awkward):
    output_dir, manifests = awkward
    failure = _failures(output_dir, manifests)["c/still.mp4"]
    assert failure["error"] == "NotAVideoError"
    assert "1 frame(s), fewer than --min_frames=2" in failure["reason"]


def test_a_class_without_an_example_stays_in_the_label_map_and_is_reported(awkward):
    output_dir, manifests = awkward
    assert data.class_names(output_dir) == ["a", "b", "c"]
    assert manifests["train"]["classes_without_examples"] == {"c": 1}
    assert manifests["holdout"]["classes_without_examples"] == {"c": 0}
    assert "classes without an example: holdout: 'c' (none listed); train: 'c' (all 1 failed)" in (
        convert.summary_line(manifests)
    )


@pytest.mark.parametrize("folder", [b"jump\nrope", b"caf\xe9"], ids=["newline", "latin-1"])
def test_a_class_name_that_cannot_be_a_label_map_line_stops_the_listing(tmp_path, folder):
    root = os.fsencode(str(tmp_path / "videos"))
    for name in (b"walk", folder):
        os.makedirs(os.path.join(root, name))
        video_fixtures.write_good_video(os.fsdecode(os.path.join(root, name, b"v.mp4")), frames=2)
    with pytest.raises(datasets.DatasetLayoutError, match="rename the folder") as e:
        _convert(os.fsdecode(root), tmp_path / "records")
    assert "\n" not in str(e.value)  # one line, the folder named with its bytes escaped
    assert repr(folder)[2:-1] in str(e.value)
    assert not os.path.exists(tmp_path / "records")  # refused before any work
    with pytest.raises(ValueError, match="cannot be a line of label_map.txt"):
        fmt.label_map_text(["walk", "jump\nrope"])
