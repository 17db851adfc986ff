"""Checks of the converted records before any phase starts: present, labelled alike, same options.

A run reads the records that ``pipelines.make_tfrecords`` wrote (``WORKSPACE.md``): each split's
manifest and shards, one label map, one set of conversion options, a dataset fingerprint. These
checks fail with a message that says what to do before a network is built; ``clip_warnings``
says where the clip flags ask for pixels or frames the records do not have.
"""

from __future__ import annotations

import json

import tensorflow as tf

from stfusion_tf import data as data_lib
from stfusion_tf import preprocessing
from stfusion_tf.training.config import HOLDOUT_SPLIT
from tfrecords_tools import fingerprint


def check_records(records_dir: str, splits, num_classes: int | None = None) -> list[str]:
    """Checks that every split in ``splits`` is there, not empty and labelled like the others.

    Raises a ValueError / FileNotFoundError that says what to do, BEFORE a phase starts, when:
    the label map is missing or empty, a split has no manifest, no shards or no examples, a
    split's manifest was written with another label map (a different class count, or classes the
    label map does not hold: records converted separately into one folder), or ``num_classes``
    (from a checkpointed run) differs from the label map. Returns the class names.
    """
    names = data_lib.class_names(records_dir)
    known = set(names)
    for split in splits:
        try:
            data_lib.num_examples(records_dir, split)
            data_lib.split_files(records_dir, split)
        except FileNotFoundError as e:
            if split != HOLDOUT_SPLIT:
                raise
            raise FileNotFoundError(
                f"{e} The holdout split (scored by the search and sample phases) is carved from "
                "train by pipelines.make_tfrecords --holdout_fraction=0.05 (for example)."
            ) from None
        with tf.io.gfile.GFile(data_lib.fmt.manifest_path(records_dir, split)) as f:
            manifest = json.load(f)
        manifest_classes = manifest.get("num_classes")
        unknown = sorted(set(manifest.get("examples_per_class", {})) - known)
        if (manifest_classes is not None and manifest_classes != len(names)) or unknown:
            raise ValueError(
                f"Split {split!r} in {records_dir!r} does not match the label map "
                f"({len(names)} classes in {data_lib.fmt.LABEL_MAP_FILENAME}; the split's manifest "
                f"says {manifest_classes} classes"
                + (f", unknown classes {unknown}" if unknown else "")
                + "). Its records were converted with another label map: convert every split in "
                "one run of pipelines.make_tfrecords into one --output_dir."
            )
    if num_classes is not None and num_classes != len(names):
        raise ValueError(
            f"The label map of {records_dir!r} has {len(names)} classes but the model has "
            f"{num_classes}. Use the records the run was started with, or a new --workspace."
        )
    return names


def conversion_options(records_dir: str) -> dict:
    """The conversion options (``options`` of the manifests) of every split, which must agree.

    They become the conversion part of the run's ``PreprocessingSpec``; splits converted with
    different frame rates, sizes or JPEG qualities would train and test on different pixels.
    """
    found = {}
    for path in sorted(tf.io.gfile.glob(data_lib.fmt.manifest_path(records_dir, "*"))):
        with tf.io.gfile.GFile(path) as f:
            manifest = json.load(f)
        options = manifest.get("options", {})
        found[manifest.get("split", path)] = {
            key: options.get(key) for key in preprocessing.CONVERSION_FIELDS
        }
    if not found:
        raise FileNotFoundError(
            f"No manifest in {records_dir!r}: run python -m pipelines.make_tfrecords first."
        )
    distinct = {json.dumps(v, sort_keys=True) for v in found.values()}
    if len(distinct) > 1:
        raise ValueError(
            f"The splits in {records_dir!r} were converted with different options ({found}): "
            "convert them again in one run of pipelines.make_tfrecords."
        )
    return next(iter(found.values()))


def _short_sides(manifest: dict) -> dict[int, int]:
    """Videos per stored short side, from the manifest's ``frame_sizes`` (``"HxW": videos``)."""
    sides: dict[int, int] = {}
    for size, count in (manifest.get("frame_sizes") or {}).items():
        height, width = (int(n) for n in size.split("x"))
        sides[min(height, width)] = sides.get(min(height, width), 0) + count
    return sides


def clip_warnings(records_dir: str, splits, spec: preprocessing.PreprocessingSpec) -> list[str]:
    """What the clip settings do to the stored frames that a user would not guess, one line each,
    from the splits' manifests (``frame_sizes``, ``frames``: no record is read):

    - upsampling: a split holds frames whose short side is smaller than the training crop
      (``crop_size``) or the evaluation crop: those clips are enlarged, showing no detail the
      records lack (convert with a larger ``--short_side``, or crop smaller);
    - padding: a split holds videos shorter than a clip's span, ``(T - 1) * stride + 1``
      frames: their clips repeat the last frame (``stfusion_tf.data``).

    A manifest without these fields (an older conversion) gives no warning.
    """
    lines = []
    crops = {"--crop_size": spec.crop_size, "--eval_crop_size": spec.eval_crop}
    for split in splits:
        with tf.io.gfile.GFile(data_lib.fmt.manifest_path(records_dir, split)) as f:
            manifest = json.load(f)
        sides = _short_sides(manifest)
        total = sum(sides.values())
        larger = {flag: crop for flag, crop in crops.items() if sides and min(sides) < crop}
        if larger:
            crop = max(larger.values())
            smaller = sum(n for side, n in sides.items() if side < crop)
            lines.append(
                f"split {split!r}: {smaller} of {total} videos are stored with a short side under "
                f"the crop ({', '.join(f'{k}={v}' for k, v in larger.items())}; smallest "
                f"{min(sides)} px): their clips are upsampled. Convert with "
                f"pipelines.make_tfrecords --short_side={crop} or more, or crop smaller."
            )
        frames = manifest.get("frames") or {}
        if frames.get("min") is not None and frames["min"] < spec.span:
            lines.append(
                f"split {split!r}: its shortest video has {frames['min']} frames (median "
                f"{frames.get('median', frames['min']):g}), fewer than a clip spans "
                f"({spec.span}: --num_frames={spec.num_frames}, --stride={spec.stride}): clips "
                "of the short videos repeat their last frame (padding). Lower --num_frames or "
                "--stride."
            )
    return lines


def read_fingerprint(records_dir: str) -> dict | None:
    """The records' dataset fingerprint, or None (with a note) for records made before it."""
    try:
        return fingerprint.read_fingerprint(records_dir)
    except FileNotFoundError:
        print(
            f"stfusion_tf: {records_dir!r} has no dataset fingerprint (converted by an older "
            "pipelines.make_tfrecords, or by one that stopped before its end: convert again): "
            "checkpoints and results will not name their data.",
            flush=True,
        )
        return None
