"""The video TFRecord format, in one place.

One ``tf.train.SequenceExample`` per video, with the keys of DeepMind's DMVR and MediaPipe's
MediaSequence, so their readers (and ours) read the same records:

- feature lists: ``image/encoded`` (one JPEG per frame), ``image/timestamp`` (int64 microseconds);
- context: ``clip/label/index``, ``clip/label/text``, ``video/filename`` (relative to the input
  root), ``clip/start/timestamp`` / ``clip/end/timestamp`` (int64 microseconds), ``image/height``,
  ``image/width``, ``image/frame_rate`` (float), ``image/format`` (``JPEG``).

Everything that writes or reads records uses the constants and functions here; no other module
spells a feature key. ``FORMAT_VERSION`` goes into every manifest so a reader can refuse records
written in a layout it does not know.

TensorFlow is imported on first use, not at import time: the keys and ``VideoRecord`` are also
used by processes that never build a record (the Beam job's decoder helper process, which must
start fast, and the driver of a Dataflow job).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import struct

FORMAT_VERSION = 1

# Feature lists (one entry per frame).
IMAGE_ENCODED = "image/encoded"
IMAGE_TIMESTAMP = "image/timestamp"
# Context (one value per video).
LABEL_INDEX = "clip/label/index"
LABEL_TEXT = "clip/label/text"
VIDEO_FILENAME = "video/filename"
CLIP_START_TIMESTAMP = "clip/start/timestamp"
CLIP_END_TIMESTAMP = "clip/end/timestamp"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_FRAME_RATE = "image/frame_rate"
IMAGE_FORMAT = "image/format"

IMAGE_FORMAT_JPEG = b"JPEG"
SHARD_SUFFIX = ".tfrecord"
LABEL_MAP_FILENAME = "label_map.txt"
# A split's files are named by their content (the first hex digits of their SHA-256), so a
# conversion never writes over a file of the one before unless the bytes are equal: the commit
# moves the new files in beside the old ones (``pipelines.commit_splits``). The same input and
# options still give the same names.
NAME_HASH_DIGITS = 8
# What a split writes beside its shards: kind -> what the file lists, one JSON line each.
REPORT_KINDS = ("failures", "videos")
REPORT_SUFFIX = ".jsonl"
# <split>-<index>-of-<count>[-<hash>].tfrecord; the names without a hash are those of
# conversions before content-addressed names.
SHARD_NAME = re.compile(
    r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})"
    rf"(?:-(?P<hash>[0-9a-f]{{{NAME_HASH_DIGITS}}}))?{re.escape(SHARD_SUFFIX)}$"
)


def shard_name(split: str, index: int, num_shards: int, sha256: str) -> str:
    """The file name of shard ``index`` of ``num_shards`` of ``split`` whose bytes have the
    SHA-256 ``sha256`` (hex).

    >>> name = shard_name("train", 0, 2, "35e6f1c0" + "0" * 56)
    >>> name
    'train-00000-of-00002-35e6f1c0.tfrecord'
    >>> SHARD_NAME.match(name)["split"], SHARD_NAME.match(name)["count"]
    ('train', '00002')
    """
    return f"{split}-{index:05d}-of-{num_shards:05d}-{sha256[:NAME_HASH_DIGITS]}{SHARD_SUFFIX}"


def shard_pattern(directory: str, split: str) -> str:
    """The glob that matches every shard of ``split`` written under ``directory`` (with or
    without the content hash in its name)."""
    return os.path.join(os.fspath(directory), f"{split}-?????-of-?????*{SHARD_SUFFIX}")


def report_name(split: str, kind: str, sha256: str) -> str:
    """The file name of a split's report of ``kind`` (``REPORT_KINDS``) whose bytes have the
    SHA-256 ``sha256``: ``<split>.failures-<hash>.jsonl``, ``<split>.videos-<hash>.jsonl``.
    Readers find them through the split's manifest (``manifest.report_path``)."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"A report is one of {REPORT_KINDS}. Received: kind={kind!r}")
    return f"{split}.{kind}-{sha256[:NAME_HASH_DIGITS]}{REPORT_SUFFIX}"


def unhashed_report_name(split: str, kind: str) -> str:
    """The name a report had before content-addressed names (``<split>.failures.jsonl``), read
    for a manifest that does not list its report files."""
    return f"{split}.{kind}{REPORT_SUFFIX}"


def report_pattern(directory: str, split: str, kind: str) -> str:
    """The glob that matches every report of ``kind`` of ``split`` (hashed or not)."""
    return os.path.join(os.fspath(directory), f"{split}.{kind}*{REPORT_SUFFIX}")


def manifest_path(directory: str, split: str) -> str:
    return os.path.join(os.fspath(directory), f"{split}.manifest.json")


@dataclasses.dataclass
class VideoRecord:
    """A converted video, as plain Python values (what the writer takes and tools read back)."""

    filename: str
    label_index: int
    label_text: str
    frames: list[bytes]
    timestamps_us: list[int]
    height: int
    width: int
    frame_rate: float
    start_us: int = 0
    end_us: int = 0

    def __post_init__(self):
        if len(self.frames) != len(self.timestamps_us):
            raise ValueError(
                f"A record needs one timestamp per frame. Received: {len(self.frames)} frames and "
                f"{len(self.timestamps_us)} timestamps for {self.filename!r}."
            )


@functools.cache
def _tf():
    return importlib.import_module("tensorflow")


# The record's features as plain data, kind in ("bytes", "int64", "float"): the one mapping from a
# VideoRecord to feature keys, used by both writers below.
def _context(record: VideoRecord) -> dict[str, tuple[str, list]]:
    return {
        LABEL_INDEX: ("int64", [record.label_index]),
        LABEL_TEXT: ("bytes", [record.label_text.encode()]),
        VIDEO_FILENAME: ("bytes", [record.filename.encode()]),
        CLIP_START_TIMESTAMP: ("int64", [record.start_us]),
        CLIP_END_TIMESTAMP: ("int64", [record.end_us]),
        IMAGE_HEIGHT: ("int64", [record.height]),
        IMAGE_WIDTH: ("int64", [record.width]),
        IMAGE_FRAME_RATE: ("float", [record.frame_rate]),
        IMAGE_FORMAT: ("bytes", [IMAGE_FORMAT_JPEG]),
    }


def _feature_lists(record: VideoRecord) -> dict[str, tuple[str, list[list]]]:
    return {
        IMAGE_ENCODED: ("bytes", [[f] for f in record.frames]),
        IMAGE_TIMESTAMP: ("int64", [[t] for t in record.timestamps_us]),
    }


def to_sequence_example(record: VideoRecord):
    """The ``tf.train.SequenceExample`` of a record (tools and tests; the writer uses
    ``serialize``, which builds the same bytes without TensorFlow)."""
    tf = _tf()
    lists = {"bytes": tf.train.BytesList, "int64": tf.train.Int64List, "float": tf.train.FloatList}

    def feature(kind, values):
        return tf.train.Feature(**{f"{kind}_list": lists[kind](value=values)})

    return tf.train.SequenceExample(
        context=tf.train.Features(feature={k: feature(*kv) for k, kv in _context(record).items()}),
        feature_lists=tf.train.FeatureLists(
            feature_list={
                k: tf.train.FeatureList(feature=[feature(kind, v) for v in per_frame])
                for k, (kind, per_frame) in _feature_lists(record).items()
            }
        ),
    )


# Protocol-buffer wire format of tensorflow.SequenceExample (tensorflow/core/example/*.proto):
# SequenceExample{1: Features context, 2: FeatureLists}; Features{1: map<string, Feature>};
# FeatureLists{1: map<string, FeatureList>}; FeatureList{1: repeated Feature};
# Feature{oneof 1: BytesList, 2: FloatList, 3: Int64List}, each {1: repeated value (packed
# for float and int64)}. Map entries are {1: key, 2: value}, written sorted by key as protobuf's
# deterministic serialization does, so the bytes equal TensorFlow's (a test checks it).
_KIND_FIELD = {"bytes": 1, "float": 2, "int64": 3}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 values are written as 10-byte two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Message:
    """A message being written: its chunks, concatenated once at the end. Nesting a message only
    adds a tag and a length in front, so a video's megabytes of JPEG bytes are copied once
    (``bytes``), not once per nesting level (five levels: 45 ms per 150-frame video before)."""

    __slots__ = ("chunks", "size")

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)

    def field(self, number: int, payload: bytes | _Message) -> None:
        """A length-delimited field (wire type 2): tag, length, then the payload's chunks."""
        if isinstance(payload, bytes):
            self.add(_varint(number << 3 | 2) + _varint(len(payload)))
            self.add(payload)
            return
        self.add(_varint(number << 3 | 2) + _varint(payload.size))
        self.chunks += payload.chunks
        self.size += payload.size

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def _wire_feature(kind: str, values: list) -> _Message:
    inner = _Message()
    if kind == "bytes":
        for v in values:
            inner.field(1, v)
    elif kind == "int64" and values:
        inner.field(1, b"".join(_varint(int(v)) for v in values))
    elif kind == "float" and values:
        inner.field(1, struct.pack(f"<{len(values)}f", *values))
    feature = _Message()
    feature.field(_KIND_FIELD[kind], inner)
    return feature


def _wire_map(entries: dict[str, _Message]) -> _Message:
    out = _Message()
    for key, value in sorted(entries.items()):
        entry = _Message()
        entry.field(1, key.encode())
        entry.field(2, value)
        out.field(1, entry)
    return out


def _feature_list(kind: str, per_frame: list[list]) -> _Message:
    out = _Message()
    for values in per_frame:
        out.field(1, _wire_feature(kind, values))
    return out


def serialize(record: VideoRecord) -> bytes:
    """The bytes the Beam job writes for one video: ``to_sequence_example(record)`` serialized
    deterministically, built without importing TensorFlow (so Beam workers start fast and
    need no TensorFlow at all)."""
    example = _Message()
    example.field(1, _wire_map({k: _wire_feature(*kv) for k, kv in _context(record).items()}))
    lists = {k: _feature_list(*kv) for k, kv in _feature_lists(record).items()}
    example.field(2, _wire_map(lists))
    return example.bytes()


def deserialize(serialized: bytes) -> VideoRecord:
    """Reads one record back into Python values (tools and tests; training uses ``parse``)."""
    example = _tf().train.SequenceExample.FromString(serialized)
    ctx = example.context.feature
    lists = example.feature_lists.feature_list

    def one(key, kind):
        values = getattr(ctx[key], kind).value
        if len(values) != 1:
            raise ValueError(f"Context feature {key!r} must hold one value, found {len(values)}.")
        return values[0]

    return VideoRecord(
        filename=one(VIDEO_FILENAME, "bytes_list").decode(),
        label_index=int(one(LABEL_INDEX, "int64_list")),
        label_text=one(LABEL_TEXT, "bytes_list").decode(),
        frames=[f.bytes_list.value[0] for f in lists[IMAGE_ENCODED].feature],
        timestamps_us=[int(f.int64_list.value[0]) for f in lists[IMAGE_TIMESTAMP].feature],
        height=int(one(IMAGE_HEIGHT, "int64_list")),
        width=int(one(IMAGE_WIDTH, "int64_list")),
        frame_rate=float(one(IMAGE_FRAME_RATE, "float_list")),
        start_us=int(one(CLIP_START_TIMESTAMP, "int64_list")),
        end_us=int(one(CLIP_END_TIMESTAMP, "int64_list")),
    )


@functools.cache
def _parse_specs():
    tf = _tf()
    context = {
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64),
        LABEL_TEXT: tf.io.FixedLenFeature([], tf.string),
        VIDEO_FILENAME: tf.io.FixedLenFeature([], tf.string),
        CLIP_START_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        CLIP_END_TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_FRAME_RATE: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    sequence = {
        IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
        IMAGE_TIMESTAMP: tf.io.FixedLenSequenceFeature([], tf.int64),
    }
    return context, sequence


def parse(serialized):
    """Parses one serialized record in a tf.data pipeline, WITHOUT decoding any JPEG.

    Returns a dict keyed by the feature keys above; ``image/encoded`` is a 1-D string tensor of
    JPEG frames, so the input pipeline can choose the clip's frames before paying for decoding.
    """
    context_spec, sequence_spec = _parse_specs()
    context, sequence = _tf().io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    return {**context, **sequence}


def read_label_map(path: str) -> list[str]:
    """Class names in label-index order (line number = ``clip/label/index``)."""
    with _tf().io.gfile.GFile(path) as f:
        names = [line.rstrip("\n") for line in f]
    return [n for n in names if n]


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a line of ``label_map.txt`` (None: it can). Every reader splits the
    file into lines, so a class name that is empty or holds a line break would shift every index
    after it; one that is not UTF-8 (a folder name's undecodable bytes) cannot be written.

    >>> class_name_problem("ApplyEyeMakeup") is None
    True
    >>> class_name_problem("jump\\nrope")
    'it holds a line break'
    """
    if not name:
        return "it is empty"
    if name.splitlines() != [name]:
        return "it holds a line break"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    return None


def label_map_text(names: list[str]) -> str:
    """The contents of ``label_map.txt``: one class name per line, in label-index order.

    Raises:
      ValueError: a name cannot be a line (``class_name_problem``); listing refuses such class
        names first, so this only guards the file.
    """
    for name in names:
        problem = class_name_problem(name)
        if problem:
            raise ValueError(
                f"Class name {name!r} cannot be a line of {LABEL_MAP_FILENAME}: {problem}."
            )
    return "".join(f"{n}\n" for n in names)


def write_label_map(path: str, names: list[str]) -> None:
    with _tf().io.gfile.GFile(path, "w") as f:
        f.write(label_map_text(names))
