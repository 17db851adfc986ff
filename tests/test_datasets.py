"""Dataset layouts (pipelines/datasets.py, pipelines/layouts/): fixture trees in each official
layout, list files written with the real syntax; videos are zero-byte placeholders (nothing here
decodes)."""

from __future__ import annotations

import collections
import json
import os

import pytest

from pipelines import datasets
from pipelines.datasets import DatasetLayoutError, UnsafePathError, VideoEntry
from pipelines.listing import sorted_entries


def touch(root, *relative_paths):
    for relative in relative_paths:
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()


def write(root, relative, text, newline="\n"):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(text.replace("\n", newline))


def summary(listing):
    return [(e.path, e.label, e.split) for e in listing.entries]


# ---------------------------------------------------------------------------------------------
# folder


def test_folder_lists_every_video_in_train_with_sorted_classes(tmp_path):
    touch(
        tmp_path,
        "walk/b.mp4",
        "walk/a.AVI",
        "jump/x.webm",
        "jump/sub/y.mkv",
        "jump/notes.txt",
        "jump/.hidden.mp4",
    )
    os.makedirs(tmp_path / "empty_class")
    listing = datasets.list_dataset("folder", str(tmp_path))
    assert listing.class_names == ["jump", "walk"]
    assert summary(listing) == [
        ("jump/sub/y.mkv", "jump", "train"),
        ("jump/x.webm", "jump", "train"),
        ("walk/a.AVI", "walk", "train"),
        ("walk/b.mp4", "walk", "train"),
    ]
    assert listing.frame_rate is None
    assert not any(e.frame_folder or e.start_s is not None for e in listing.entries)


def test_folder_with_split_subfolders(tmp_path):
    touch(tmp_path, "train/walk/a.mp4", "train/jump/b.mp4", "test/walk/c.mp4", "val/run/d.mov")
    listing = datasets.list_dataset("folder", str(tmp_path))
    assert listing.class_names == ["jump", "run", "walk"]
    assert summary(listing) == [
        ("test/walk/c.mp4", "walk", "test"),
        ("train/jump/b.mp4", "jump", "train"),
        ("train/walk/a.mp4", "walk", "train"),
        ("val/run/d.mov", "run", "val"),
    ]
    test_only = datasets.list_dataset("folder", str(tmp_path), split="test")
    assert summary(test_only) == [("test/walk/c.mp4", "walk", "test")]
    assert test_only.class_names == listing.class_names


def test_folder_with_a_class_named_train_is_not_split(tmp_path):
    touch(tmp_path, "train/a.mp4", "walk/b.mp4")
    listing = datasets.list_dataset("folder", str(tmp_path))
    assert summary(listing) == [("train/a.mp4", "train", "train"), ("walk/b.mp4", "walk", "train")]


def test_folder_without_videos_says_what_layout_it_expects(tmp_path):
    touch(tmp_path, "walk/readme.txt")
    with pytest.raises(
        DatasetLayoutError,
        match=r"No videos found under .*extensions .* <input_dir>/<class>/<video>",
    ):
        datasets.list_dataset("folder", str(tmp_path))


def test_folder_with_real_videos(tmp_path):
    from tests import video_fixtures

    os.makedirs(tmp_path / "move_left")
    video_fixtures.write_good_video(str(tmp_path / "move_left" / "v0.mp4"), frames=4)
    listing = datasets.list_dataset("folder", str(tmp_path))
    assert summary(listing) == [("move_left/v0.mp4", "move_left", "train")]


# ---------------------------------------------------------------------------------------------
# arguments


def test_unknown_format_split_and_split_id(tmp_path):
    touch(tmp_path, "walk/a.mp4")
    with pytest.raises(ValueError, match=r"dataset_format must be one of .* Received: "):
        datasets.list_dataset("youtube8m", str(tmp_path))
    with pytest.raises(ValueError, match=r"split='test'; this dataset has \['train'\]"):
        datasets.list_dataset("folder", str(tmp_path), split="test")
    with pytest.raises(ValueError, match=r"split='holdout'.*carve_holdout"):
        datasets.list_dataset("folder", str(tmp_path), split="holdout")
    with pytest.raises(ValueError, match=r"split_id must be 1, 2 or 3. Received: split_id=4"):
        datasets.list_dataset("folder", str(tmp_path), split_id=4)
    with pytest.raises(ValueError, match=r"folder has one official split. Received: split_id=2"):
        datasets.list_dataset("folder", str(tmp_path), split_id=2)
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        datasets.list_dataset("folder", str(tmp_path / "missing"))


# ---------------------------------------------------------------------------------------------
# carve_holdout


def _listing(counts, extra_splits=()):
    entries = [
        VideoEntry(f"{label}/v{i:03d}.mp4", label, "train")
        for label, n in counts.items()
        for i in range(n)
    ]
    entries += [VideoEntry(f"{label}/t.mp4", label, s) for s in extra_splits for label in counts]
    return datasets.DatasetListing(sorted_entries(entries), sorted(counts))


def test_carve_holdout_is_stratified_and_keeps_one_per_class():
    listing = _listing({"a": 10, "b": 20, "c": 1, "d": 2}, extra_splits=("test",))
    carved = datasets.carve_holdout(listing, 0.3)
    per = collections.Counter((e.label, e.split) for e in carved.entries)
    assert per[("a", "holdout")] == 3 and per[("a", "train")] == 7
    assert per[("b", "holdout")] == 6 and per[("b", "train")] == 14
    assert per[("c", "holdout")] == 0 and per[("c", "train")] == 1
    assert per[("d", "holdout")] == 1 and per[("d", "train")] == 1
    assert [e for e in carved.entries if e.split == "test"] == [
        e for e in listing.entries if e.split == "test"
    ]
    assert carved.class_names == listing.class_names
    assert carved.entries == sorted(carved.entries, key=lambda e: (e.split, e.path))


def test_carve_holdout_is_deterministic_disjoint_and_complete():
    listing = _listing({"a": 30, "b": 25})
    first = datasets.carve_holdout(listing, 0.2, seed=7)
    assert datasets.carve_holdout(listing, 0.2, seed=7) == first
    holdout = {e.path for e in first.entries if e.split == "holdout"}
    train = {e.path for e in first.entries if e.split == "train"}
    assert holdout and not holdout & train
    assert holdout | train == {e.path for e in listing.entries}
    other_seed = {e.path for e in datasets.carve_holdout(listing, 0.2, seed=8).entries}
    assert other_seed == holdout | train
    assert {
        e.path for e in datasets.carve_holdout(listing, 0.2, seed=8).entries if e.split == "holdout"
    } != holdout
    # Adding a video to one class does not reshuffle the other class's holdout.
    grown = _listing({"a": 30, "b": 26})
    grown_holdout = {e.path for e in datasets.carve_holdout(grown, 0.2, seed=7).entries}
    assert {p for p in holdout if p.startswith("a/")} <= grown_holdout


def test_carve_holdout_zero_fraction_and_bad_arguments():
    listing = _listing({"a": 5})
    assert datasets.carve_holdout(listing, 0.0) == listing
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\). Received: fraction=1.0"):
        datasets.carve_holdout(listing, 1.0)
    with pytest.raises(ValueError, match="already has a holdout"):
        datasets.carve_holdout(datasets.carve_holdout(listing, 0.4), 0.4)


# ---------------------------------------------------------------------------------------------
# resolve_inside


def test_resolve_inside_accepts_paths_in_the_folder(tmp_path):
    touch(tmp_path, "walk/a.mp4")
    assert datasets.resolve_inside(str(tmp_path), "walk/a.mp4") == str(tmp_path / "walk/a.mp4")
    assert datasets.resolve_inside(str(tmp_path), "walk/../walk/a.mp4") == str(
        tmp_path / "walk/a.mp4"
    )
    # Missing files are the decoder's failure, not an unsafe path.
    assert datasets.resolve_inside(str(tmp_path), "walk/gone.mp4").endswith("walk/gone.mp4")


def test_resolve_inside_refuses_escapes(tmp_path):
    root = tmp_path / "data"
    touch(root, "walk/a.mp4")
    touch(tmp_path, "secret.mp4")
    os.symlink(tmp_path / "secret.mp4", root / "walk" / "link.mp4")
    os.symlink(tmp_path, root / "up")
    for bad, reason in [
        ("../secret.mp4", r"'\.\.' leaves"),
        ("walk/../../secret.mp4", r"'\.\.' leaves"),
        (str(tmp_path / "secret.mp4"), "absolute path"),
        ("walk/link.mp4", "symlink resolves to"),
        ("up/secret.mp4", "symlink resolves to"),
        ("", "empty path"),
    ]:
        with pytest.raises(UnsafePathError, match=f"points outside --input_dir .*{reason}"):
            datasets.resolve_inside(str(root), bad)


def test_resolve_inside_follows_symlinks_that_stay_inside(tmp_path):
    touch(tmp_path, "walk/a.mp4")
    os.symlink(tmp_path / "walk" / "a.mp4", tmp_path / "walk" / "alias.mp4")
    assert datasets.resolve_inside(str(tmp_path), "walk/alias.mp4") == str(
        tmp_path / "walk/alias.mp4"
    )


def test_listing_keeps_unsafe_entries_for_the_job_to_report(tmp_path):
    root = tmp_path / "data"
    touch(root, "walk/a.mp4")
    touch(tmp_path, "secret.mp4")
    os.symlink(tmp_path / "secret.mp4", root / "walk" / "link.mp4")
    listing = datasets.list_dataset("folder", str(root))
    assert [e.path for e in listing.entries] == ["walk/a.mp4", "walk/link.mp4"]
    with pytest.raises(UnsafePathError):
        datasets.resolve_inside(str(root), "walk/link.mp4")


# ---------------------------------------------------------------------------------------------
# ucf101

UCF_CLASS_IND = "1 ApplyEyeMakeup\n2 ApplyLipstick\n3 HandstandPushups\n"


def make_ucf101(root, list_dir="ucfTrainTestlist", video_dir=""):
    # The official list files have Windows line endings.
    lists = os.path.join(root, list_dir)
    write(lists, "classInd.txt", UCF_CLASS_IND, newline="\r\n")
    for n in (1, 2):
        write(
            lists,
            f"trainlist0{n}.txt",
            f"ApplyLipstick/v_ApplyLipstick_g0{n}_c01.avi 2\n"
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
            "HandstandPushups/v_HandStandPushups_g08_c01.avi 3\n",
            newline="\r\n",
        )
        write(
            lists,
            f"testlist0{n}.txt",
            f"ApplyEyeMakeup/v_ApplyEyeMakeup_g0{n}_c01.avi\n"
            "HandstandPushups/v_HandStandPushups_g01_c02.avi\n",
            newline="\r\n",
        )
    touch(
        os.path.join(root, video_dir),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
    )


def test_ucf101_official_layout(tmp_path):
    make_ucf101(tmp_path)
    listing = datasets.list_dataset("ucf101", str(tmp_path))
    assert listing.class_names == ["ApplyEyeMakeup", "ApplyLipstick", "HandstandPushups"]
    assert summary(listing) == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", "ApplyEyeMakeup", "test"),
        ("HandstandPushups/v_HandStandPushups_g01_c02.avi", "HandstandPushups", "test"),
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup", "train"),
        ("ApplyLipstick/v_ApplyLipstick_g01_c01.avi", "ApplyLipstick", "train"),
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", "HandstandPushups", "train"),
    ]
    second = datasets.list_dataset("ucf101", str(tmp_path), split_id=2, split="train")
    assert "ApplyLipstick/v_ApplyLipstick_g02_c01.avi" in [e.path for e in second.entries]
    assert {e.split for e in second.entries} == {"train"}
    assert second.class_names == listing.class_names


def test_ucf101_list_files_beside_the_videos_or_in_a_parent_folder(tmp_path):
    make_ucf101(tmp_path / "flat", list_dir="")
    assert len(datasets.list_dataset("ucf101", str(tmp_path / "flat")).entries) == 5
    # The two official archives unpacked side by side: UCF-101/ and ucfTrainTestlist/.
    make_ucf101(tmp_path / "both", video_dir="UCF-101")
    listing = datasets.list_dataset("ucf101", str(tmp_path / "both"))
    assert listing.entries[0].path == "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"


def test_ucf101_errors_name_the_file_and_what_to_do(tmp_path):
    with pytest.raises(
        DatasetLayoutError, match="classInd.txt not found under .*contains ucfTrainTestlist/"
    ):
        datasets.list_dataset("ucf101", str(tmp_path))
    make_ucf101(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"trainlist03.txt not found \(split_id=3\)"):
        datasets.list_dataset("ucf101", str(tmp_path), split_id=3)
    write(tmp_path, "ucfTrainTestlist/testlist01.txt", "Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(
        DatasetLayoutError, match=r"testlist01.txt, line 1: label 'Juggling' is not in .*classInd"
    ):
        datasets.list_dataset("ucf101", str(tmp_path))
    write(tmp_path, "ucfTrainTestlist/trainlist02.txt", "ApplyLipstick/v_x.avi 1\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1: class index 1 is 'ApplyEyeMakeup'"):
        datasets.list_dataset("ucf101", str(tmp_path), split_id=2)
    write(tmp_path, "ucfTrainTestlist/trainlist02.txt", "ApplyLipstick/v_x.avi 9\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1: cannot read .*class index in 1..3"):
        datasets.list_dataset("ucf101", str(tmp_path), split_id=2)


def test_list_files_pointing_at_no_video_mean_a_wrong_input_dir(tmp_path):
    make_ucf101(tmp_path)
    for path in (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
    ):
        os.remove(tmp_path / path)
    with pytest.raises(
        DatasetLayoutError, match=r"None of the 5 videos listed .* point --input_dir"
    ):
        datasets.list_dataset("ucf101", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# hmdb51


def make_hmdb51(root, split_dir="testTrainMulti_7030_splits"):
    for n in (1, 2, 3):
        write(
            root,
            f"{split_dir}/brush_hair_test_split{n}.txt",
            f"April_09_brush_hair_u_nm_np1_ba_goo_0.avi {1 if n == 1 else 2} \n"
            "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 2 \n"
            "brushing_hair_brush_hair_h_cm_np1_le_goo_1.avi 0 \n",
        )
        write(
            root,
            f"{split_dir}/cartwheel_test_split{n}.txt",
            "(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi 1 \n",
        )
    touch(root, "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi")


def test_hmdb51_official_split_files(tmp_path):
    make_hmdb51(tmp_path)
    listing = datasets.list_dataset("hmdb51", str(tmp_path))
    assert listing.class_names == ["brush_hair", "cartwheel"]
    assert summary(listing) == [
        ("brush_hair/Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi", "brush_hair", "test"),
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair", "train"),
        (
            "cartwheel/(Rad)Schlag_die_Bank!_cartwheel_f_cm_np1_le_med_0.avi",
            "cartwheel",
            "train",
        ),
    ]
    second = datasets.list_dataset("hmdb51", str(tmp_path), split_id=2)
    assert [(e.path.split("/")[1][:8], e.split) for e in second.entries][:2] == [
        ("April_09", "test"),
        ("Blonde_b", "test"),
    ]


def test_hmdb51_splits_folder_and_errors(tmp_path):
    make_hmdb51(tmp_path, split_dir="splits")
    assert len(datasets.list_dataset("hmdb51", str(tmp_path)).entries) == 3
    write(tmp_path, "splits/cartwheel_test_split1.txt", "some_video.avi 3\n")
    with pytest.raises(
        DatasetLayoutError, match=r"cartwheel_test_split1.txt, line 1: cannot read .*<0\|1\|2>"
    ):
        datasets.list_dataset("hmdb51", str(tmp_path))
    with pytest.raises(DatasetLayoutError, match=r"No HMDB-51 split files .*test_train_splits"):
        datasets.list_dataset("hmdb51", str(tmp_path / "brush_hair"))


# ---------------------------------------------------------------------------------------------
# kinetics

KINETICS_TRAIN = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,--33Lscn6sk,4,14,train,0
"passing American football (in game)",-0Ak3M9UBgI,0,10,train,0
abseiling,-0ZFpG9HB9M,12,22,train,0
abseiling,-gone-yt-id,30,40,train,0
"""
KINETICS_VAL = """label,youtube_id,time_start,time_end,split
zumba,0wR5jVB-WPk,417,427,val
"""
KINETICS_TEST_UNLABELED = """youtube_id,time_start,time_end,split
--6bJUbfpnQ,17,27,test
"""


def make_kinetics(root):
    write(root, "train.csv", KINETICS_TRAIN)
    write(root, "validate.csv", KINETICS_VAL)
    write(root, "test.csv", KINETICS_TEST_UNLABELED)
    touch(
        root,
        # ActivityNet crawler: <split>/<label>/<id>_<start:06d>_<end:06d>.mp4 (already trimmed).
        "train/abseiling/--33Lscn6sk_000004_000014.mp4",
        # The same name elsewhere: the copy in the split's folder wins.
        "elsewhere/--33Lscn6sk_000004_000014.mp4",
        # CVDF tarballs: <split>/<id>_<start>_<end>.mp4, flat.
        "train/-0Ak3M9UBgI_000000_000010.mp4",
        # Whole video: the job trims to the CSV's segment.
        "raw/-0ZFpG9HB9M.mkv",
        "val/zumba/0wR5jVB-WPk_000417_000427.webm",
    )


def test_kinetics_finds_trimmed_and_whole_videos(tmp_path, caplog):
    make_kinetics(tmp_path)
    with caplog.at_level("WARNING", logger="pipelines.layouts.kinetics"):
        listing = datasets.list_dataset("kinetics", str(tmp_path))
    assert listing.class_names == ["abseiling", "passing American football (in game)", "zumba"]
    E = VideoEntry
    assert listing.entries == [
        E("raw/-0ZFpG9HB9M.mkv", "abseiling", "train", start_s=12.0, end_s=22.0),
        E("train/-0Ak3M9UBgI_000000_000010.mp4", "passing American football (in game)", "train"),
        E("train/abseiling/--33Lscn6sk_000004_000014.mp4", "abseiling", "train"),
        # Deleted from YouTube: listed under the downloader's name, reported by the job.
        E("train/abseiling/-gone-yt-id_000030_000040.mp4", "abseiling", "train"),
        E("val/zumba/0wR5jVB-WPk_000417_000427.webm", "zumba", "val"),
    ]
    assert "test.csv: 1 rows without a label skipped" in caplog.text
    with pytest.raises(ValueError, match=r"'test' is skipped: .*test.csv has no labels"):
        datasets.list_dataset("kinetics", str(tmp_path), split="test")


def test_kinetics_labeled_test_csv_in_annotations_folder(tmp_path):
    write(tmp_path, "annotations/train.csv", KINETICS_TRAIN)
    write(tmp_path, "annotations/val.csv", KINETICS_VAL)
    write(
        tmp_path,
        "annotations/test.csv",
        "label,youtube_id,time_start,time_end,split\ndrinking beer,--6bJUbfpnQ,17,27,test\n",
    )
    touch(tmp_path, "test/--6bJUbfpnQ_000017_000027.mp4")
    listing = datasets.list_dataset("kinetics", str(tmp_path))
    assert listing.splits == ["test", "train", "val"]
    assert "drinking beer" in listing.class_names
    assert listing.class_names == sorted(listing.class_names)
    test = datasets.list_dataset("kinetics", str(tmp_path), split="test")
    assert test.entries == [
        VideoEntry("test/--6bJUbfpnQ_000017_000027.mp4", "drinking beer", "test")
    ]
    assert test.class_names == listing.class_names


def test_kinetics_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"No Kinetics CSV .*annotations"):
        datasets.list_dataset("kinetics", str(tmp_path))
    write(tmp_path, "train.csv", "label,video,start,end\nabseiling,x,1,2\n")
    with pytest.raises(DatasetLayoutError, match=r"train.csv: header .* lacks \['youtube_id'"):
        datasets.list_dataset("kinetics", str(tmp_path))
    write(tmp_path, "train.csv", KINETICS_TRAIN)
    with pytest.raises(DatasetLayoutError, match=r"None of the 4 videos .*<youtube_id>\.<ext>"):
        datasets.list_dataset("kinetics", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# something-something


def make_something_v1(root):
    write(
        root,
        "something-something-v1-labels.csv",
        "Holding something\nTurning something upside down\nPushing something from left to right\n",
    )
    write(
        root,
        "something-something-v1-train.csv",
        "100218;Pushing something from left to right\n48032;Holding something\n",
    )
    write(root, "something-something-v1-validation.csv", "9;Turning something upside down\n")
    write(root, "something-something-v1-test.csv", "4242\n")
    touch(root, "20bn-something-something-v1/100218/00001.jpg")


def test_something_v1_frame_folders(tmp_path):
    make_something_v1(tmp_path)
    listing = datasets.list_dataset("something_v1", str(tmp_path))
    assert listing.class_names == [
        "Holding something",
        "Turning something upside down",
        "Pushing something from left to right",
    ]
    assert listing.frame_rate == 12.0
    root = "20bn-something-something-v1"
    assert summary(listing) == [
        (f"{root}/100218", "Pushing something from left to right", "train"),
        (f"{root}/48032", "Holding something", "train"),
        (f"{root}/9", "Turning something upside down", "val"),
    ]
    assert all(e.frame_folder for e in listing.entries)
    with pytest.raises(ValueError, match="'test' is skipped: .*without labels"):
        datasets.list_dataset("something_v1", str(tmp_path), split="test")


def test_something_v1_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="something-something-v1-labels.csv not found"):
        datasets.list_dataset("something_v1", str(tmp_path))
    make_something_v1(tmp_path)
    write(tmp_path, "something-something-v1-validation.csv", "9;Juggling something\n")
    with pytest.raises(
        DatasetLayoutError,
        match=r"validation.csv, line 1: label 'Juggling something' is not in .*labels.csv",
    ):
        datasets.list_dataset("something_v1", str(tmp_path))
    write(tmp_path, "something-something-v1-validation.csv", "9,Holding something\n")
    with pytest.raises(DatasetLayoutError, match=r"line 1: cannot read .*'<id>;<label>'"):
        datasets.list_dataset("something_v1", str(tmp_path))
    write(tmp_path, "something-something-v1-train.csv", "")
    write(tmp_path, "something-something-v1-validation.csv", "")
    with pytest.raises(
        DatasetLayoutError, match="the train/validation CSVs under .* list no video"
    ):
        datasets.list_dataset("something_v1", str(tmp_path))
    os.remove(tmp_path / "something-something-v1-train.csv")
    with pytest.raises(DatasetLayoutError, match="something-something-v1-train.csv not found"):
        datasets.list_dataset("something_v1", str(tmp_path))


SOMETHING_V2_LABELS = {
    "Approaching something with your camera": "0",
    "Holding something next to something": "2",
    "Putting something on a surface": "1",
}


def make_something_v2(root, prefix=""):
    write(root, f"{prefix}labels.json", json.dumps(SOMETHING_V2_LABELS, indent=1))
    train = [
        {
            "id": "78687",
            "label": "holding potato next to vicks vaporub bottle",
            "template": "Holding [something] next to [something]",
            "placeholders": ["potato", "vicks vaporub bottle"],
        },
        {
            "id": "42326",
            "label": "putting a pen on a table",
            "template": "Putting [something] on a surface",
            "placeholders": ["a pen"],
        },
    ]
    validation = [
        {
            "id": "74225",
            "label": "approaching a mug with your camera",
            "template": "Approaching [something] with your camera",
            "placeholders": ["a mug"],
        }
    ]
    write(root, f"{prefix}train.json", json.dumps(train))
    write(root, f"{prefix}validation.json", json.dumps(validation))
    write(root, f"{prefix}test.json", json.dumps([{"id": "1420"}]))
    touch(root, "20bn-something-something-v2/78687.webm")


def test_something_v2_template_is_the_label(tmp_path):
    make_something_v2(tmp_path)
    listing = datasets.list_dataset("something_v2", str(tmp_path))
    assert listing.class_names == [
        "Approaching something with your camera",
        "Putting something on a surface",
        "Holding something next to something",
    ]
    assert listing.frame_rate is None
    root = "20bn-something-something-v2"
    assert summary(listing) == [
        (f"{root}/42326.webm", "Putting something on a surface", "train"),
        (f"{root}/78687.webm", "Holding something next to something", "train"),
        (f"{root}/74225.webm", "Approaching something with your camera", "val"),
    ]
    with pytest.raises(ValueError, match=r"'test' is skipped: .*test.json has no labels"):
        datasets.list_dataset("something_v2", str(tmp_path), split="test")


def test_something_v2_prefixed_files_and_test_answers(tmp_path):
    make_something_v2(tmp_path / "labels", prefix="something-something-v2-")
    os.rename(
        tmp_path / "labels" / "20bn-something-something-v2",
        tmp_path / "20bn-something-something-v2",
    )
    write(tmp_path, "labels/test-answers.csv", "1420;Putting something on a surface\n")
    test = datasets.list_dataset("something_v2", str(tmp_path), split="test")
    assert summary(test) == [
        ("20bn-something-something-v2/1420.webm", "Putting something on a surface", "test")
    ]


def test_something_v2_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"labels.json .* not found"):
        datasets.list_dataset("something_v2", str(tmp_path))
    make_something_v2(tmp_path)
    write(
        tmp_path,
        "validation.json",
        json.dumps([{"id": "5", "label": "x", "template": "Juggling [something]"}]),
    )
    with pytest.raises(
        DatasetLayoutError,
        match=r"validation.json, item 0 \(id 5\): label 'Juggling something' is not in .*labels",
    ):
        datasets.list_dataset("something_v2", str(tmp_path))
    write(tmp_path, "validation.json", '[{"id": "5",')
    with pytest.raises(DatasetLayoutError, match=r"validation.json is not valid JSON"):
        datasets.list_dataset("something_v2", str(tmp_path))
    write(tmp_path, "validation.json", '[{"id": "5"}]')
    with pytest.raises(
        DatasetLayoutError, match=r"validation.json, item 0: .* lacks 'id' or 'template'"
    ):
        datasets.list_dataset("something_v2", str(tmp_path))


# ---------------------------------------------------------------------------------------------
# the pieces together


def test_holdout_on_a_listed_dataset_leaves_other_splits_and_label_map(tmp_path):
    classes = ("jump", "run", "walk")
    for label in classes:
        touch(tmp_path, *(f"train/{label}/{label}_{i:02d}.mp4" for i in range(10)))
        touch(tmp_path, f"test/{label}/{label}_t.mp4")
    listing = datasets.list_dataset("folder", str(tmp_path))
    carved = datasets.carve_holdout(listing, 0.2, seed=3)
    assert carved.splits == ["holdout", "test", "train"]
    holdout = collections.Counter(e.label for e in carved.entries if e.split == "holdout")
    assert holdout == {label: 2 for label in classes}
    assert (
        datasets.select_split(carved, "test").entries
        == datasets.select_split(listing, "test").entries
    )
    assert sorted(e.path for e in carved.entries) == sorted(e.path for e in listing.entries)
    # Listing only the train split carves the same holdout.
    train_only = datasets.list_dataset("folder", str(tmp_path), split="train")
    assert datasets.select_split(
        datasets.carve_holdout(train_only, 0.2, seed=3), "holdout"
    ) == datasets.select_split(carved, "holdout")


def test_kinetics_duplicate_rows_and_two_segments_of_one_whole_video(tmp_path, caplog):
    write(
        tmp_path,
        "train.csv",
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc,0,10,train\n"
        "abseiling,abc,0,10,train\n"
        "zumba,abc,20,30,train\n",
    )
    touch(tmp_path, "videos/abc.mp4")
    with caplog.at_level("WARNING", logger="pipelines.layouts.kinetics"):
        listing = datasets.list_dataset("kinetics", str(tmp_path))
    assert listing.entries == [
        VideoEntry("videos/abc.mp4", "abseiling", "train", start_s=0.0, end_s=10.0),
        VideoEntry("videos/abc.mp4", "zumba", "train", start_s=20.0, end_s=30.0),
    ]
    assert "line 3: videos/abc.mp4 listed twice" in caplog.text
