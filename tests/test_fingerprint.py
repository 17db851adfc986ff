"""The dataset fingerprint: its hashes against their closed form, and what the real Beam job writes
(every manifest, ``fingerprint.json``, each split's videos index), also split by split."""

import dataclasses
import hashlib
import json
import os

import av
import pytest

from pipelines import convert, synthetic
from tests import video_fixtures
from tfrecords_tools import fingerprint
from tfrecords_tools import format as fmt
from tfrecords_tools import manifest as manifest_lib

OPTIONS = convert.ConvertOptions(short_side=16)
BROKEN = "train/move_up/broken.mp4"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_hashes_and_id_have_a_closed_form():
    part = fingerprint.split_part([("b/2.mp4", "b"), ("a/1.mp4", "a")], ["c/x.mp4"])
    assert part == {
        "videos_sha256": _sha256('["a/1.mp4","a"]\n["b/2.mp4","b"]\n'),
        "num_examples": 2,
        "failures_sha256": _sha256('"c/x.mp4"\n'),
        "num_failures": 1,
    }
    assert fingerprint.split_part([], [])["failures_sha256"] == _sha256("")
    assert fingerprint.labels_part(["b", "a"]) == {"sha256": _sha256("b\na\n"), "num_classes": 2}

    shared = fingerprint.shared_part(
        ["b", "a"], dataclasses.asdict(convert.ConvertOptions(fps=10)), {"pyav": "1", "ffmpeg": "2"}
    )
    fp = fingerprint.make_fingerprint(shared, {"train": part})
    labels_sha256 = _sha256("b\na\n")
    canonical = (
        '{"decoder":{"ffmpeg":"2","pyav":"1"},"format_version":1,'
        f'"labels":{{"num_classes":2,"sha256":"{labels_sha256}"}},'
        '"options":{"fps":10.0,"jpeg_quality":90,"short_side":256},'
        '"splits":{"train":{"failures_sha256":"' + _sha256('"c/x.mp4"\n') + '",'
        '"num_examples":2,"num_failures":1,'
        '"videos_sha256":"' + _sha256('["a/1.mp4","a"]\n["b/2.mp4","b"]\n') + '"}}}'
    )
    assert fp["id"] == fingerprint.short_id(fp) == _sha256(canonical)[:16]
    # A name with a tab or a newline cannot make two lists hash alike.
    assert fingerprint.hash_lines([["a\tb", "c"]]) != fingerprint.hash_lines([["a", "b\tc"]])


def test_every_conversion_option_is_classified():
    """A new ConvertOptions field must be put in PIXEL_OPTIONS or IGNORED_OPTIONS (with a reason):
    the fingerprint refuses an unclassified one instead of silently missing it."""
    fields = {f.name for f in dataclasses.fields(convert.ConvertOptions)}
    assert fields == set(fingerprint.PIXEL_OPTIONS) | set(fingerprint.IGNORED_OPTIONS)
    assert not set(fingerprint.PIXEL_OPTIONS) & set(fingerprint.IGNORED_OPTIONS)
    options = dataclasses.asdict(OPTIONS)
    with pytest.raises(ValueError, match=r"\['denoise'\] are not classified.*PIXEL_OPTIONS"):
        fingerprint.options_part({**options, "denoise": True})
    # Options that do not change a stored byte do not change the fingerprint; fps=10 is fps=10.0.
    assert fingerprint.options_part({**options, "decode_threads": 4, "timeout_s": 1}) == (
        fingerprint.options_part(options)
    )
    assert fingerprint.options_part({**options, "fps": 10}) == fingerprint.options_part(
        {**options, "fps": 10.0}
    )


def test_splits_converted_differently_do_not_merge():
    shared = fingerprint.shared_part(["a"], dataclasses.asdict(OPTIONS), {"pyav": "1"})
    other = {**shared, "options": {**shared["options"], "short_side": 128}}
    with pytest.raises(fingerprint.FingerprintMismatchError, match="options.short_side: 16 -> 128"):
        fingerprint.merge(
            {
                "train.manifest.json": fingerprint.make_fingerprint(shared, {"train": {}}),
                "test.manifest.json": fingerprint.make_fingerprint(other, {"test": {}}),
            }
        )


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """train/ (4 classes x 2 real videos, and one broken file) and test/ (4 x 1) folders."""
    root = str(tmp_path_factory.mktemp("videos"))
    spec = video_fixtures.tiny_spec(videos_per_class=2, frames=6)
    synthetic.write_dataset(os.path.join(root, "train"), spec)
    synthetic.write_dataset(
        os.path.join(root, "test"), dataclasses.replace(spec, videos_per_class=1, seed=1)
    )
    video_fixtures.write_broken_video(os.path.join(root, BROKEN), "empty")
    return root


def _convert(root, output_dir, **kwargs):
    kwargs.setdefault("options", OPTIONS)
    return convert.run_conversion("folder", root, str(output_dir), num_shards=1, **kwargs)


@pytest.fixture(scope="module")
def converted(videos, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("records"))
    return output_dir, _convert(videos, output_dir)


def _on_disk(root, split):
    """(video id, label) of every good video of ``split``, listed from the folders."""
    return sorted(
        (f"{split}/{label}/{name}", label)
        for label in os.listdir(os.path.join(root, split))
        for name in os.listdir(os.path.join(root, split, label))
        if f"{split}/{label}/{name}" != BROKEN
    )


def test_manifests_and_fingerprint_json_hold_the_hashes_of_the_videos(videos, converted):
    output_dir, manifests = converted
    dataset = fingerprint.read_fingerprint(output_dir)
    assert set(dataset["splits"]) == set(manifests) == {"train", "test"}
    assert dataset["id"] == fingerprint.short_id(dataset)
    for split, manifest in manifests.items():
        listed = _on_disk(videos, split)
        failed = [BROKEN] if split == "train" else []
        expected = {
            "videos_sha256": _sha256("".join(f'["{p}","{label}"]\n' for p, label in listed)),
            "num_examples": len(listed),
            "failures_sha256": _sha256("".join(f'"{p}"\n' for p in failed)),
            "num_failures": len(failed),
        }
        assert dataset["splits"][split] == manifest["fingerprint"]["splits"][split] == expected
        assert manifest["num_examples"] + manifest["num_failures"] == manifest["num_inputs"]
        # The manifest's fingerprint is this split's dataset: the shared parts and its own split.
        own = manifest["fingerprint"]
        assert {k: v for k, v in own.items() if k not in ("id", "splits")} == {
            k: v for k, v in dataset.items() if k not in ("id", "splits")
        }
        assert own["id"] == fingerprint.short_id(own) != dataset["id"]
        # The video index lists exactly the hashed videos, sorted, with their frames and sizes.
        index_path = manifest_lib.report_path(output_dir, split, "videos", manifest)
        lines = open(index_path).read().splitlines()
        index = [json.loads(line) for line in lines]
        assert [(v["path"], v["label"]) for v in index] == listed
        assert {(v["frames"], v["height"], v["width"]) for v in index} == {(6, 16, 20)}
    names = fmt.label_map_text(sorted(synthetic.class_names("motion")))
    assert dataset["labels"] == {"sha256": _sha256(names), "num_classes": 4}
    assert dataset["options"] == {"short_side": 16, "fps": None, "jpeg_quality": 90}
    assert dataset["decoder"]["pyav"] == av.__version__
    assert dataset["decoder"]["ffmpeg"] == av.ffmpeg_version_info
    assert dataset["format_version"] == fmt.FORMAT_VERSION


def test_splits_converted_one_by_one_give_the_same_fingerprint(videos, converted, tmp_path):
    """--split=train then --split=test into one folder: fingerprint.json merges the splits
    already there, byte for byte what one run writes; a split converted with another option is
    refused before anything is converted."""
    output_dir, _ = converted
    _convert(videos, tmp_path, split="train")
    assert set(fingerprint.read_fingerprint(str(tmp_path))["splits"]) == {"train"}
    _convert(videos, tmp_path, split="test")
    assert (
        open(os.path.join(tmp_path, fingerprint.FINGERPRINT_FILENAME)).read()
        == open(os.path.join(output_dir, fingerprint.FINGERPRINT_FILENAME)).read()
    )
    before = open(fmt.manifest_path(str(tmp_path), "test")).read()
    with pytest.raises(
        fingerprint.FingerprintMismatchError, match=r"train.manifest.json.*jpeg_quality: 50 -> 90"
    ):
        _convert(
            videos, tmp_path, split="test", options=convert.ConvertOptions(16, jpeg_quality=50)
        )
    assert open(fmt.manifest_path(str(tmp_path), "test")).read() == before


def test_read_fingerprint_says_what_to_run_and_refuses_an_edited_file(converted, tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no converted records.*make_tfrecords"):
        fingerprint.read_fingerprint(str(tmp_path))
    output_dir, _ = converted
    older = tmp_path / "older"  # records converted before fingerprints existed
    older.mkdir()
    (older / "train.manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="Run python -m pipelines.make_tfrecords.*again"):
        fingerprint.read_fingerprint(str(older))
    fp = fingerprint.read_fingerprint(output_dir)
    fp["splits"]["test"]["num_examples"] += 1
    with open(os.path.join(tmp_path, fingerprint.FINGERPRINT_FILENAME), "w") as f:
        f.write(fingerprint.to_json(fp))
    with pytest.raises(ValueError, match="changed after the conversion"):
        fingerprint.read_fingerprint(str(tmp_path))
