"""Reading TFRecord shards record by record, and the checks a video record must pass.

``read_records`` reads TFRecord framing itself rather than through ``tf.data``: it checks the
CRC32C of every length and payload, so flipped bits and truncated shards are caught, including
the trailing partial header that ``tf.data`` silently ignores. ``parse_record``, ``check_fields``
and ``check_frames`` then check what the training input pipeline will read, with the same JPEG
decoder, and ``check_manifest`` the shard record counts against the split's manifest. Every
failure names the file and the record (``InvalidRecordError``), because a person has to find it.

``tfrecords_tools.inspect`` runs these over a whole dataset (``--validate``); other tools (the
contact sheet) read records with ``read_records`` and ``parse_record``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import tensorflow as tf
from google.protobuf import message

from tfrecords_tools import format as fmt
from tfrecords_tools import tfrecord_io

_JPEG_START = b"\xff\xd8"
# TFRecord framing: uint64 length, uint32 masked CRC32C(length), data, uint32 masked CRC32C(data).
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
# Bytes of framing around each payload (what a progress bar counting file bytes adds per record).
FRAMING_BYTES = _HEADER.size + _FOOTER.size


class InvalidRecordError(Exception):
    """A record (or the shard around it) is unreadable or inconsistent.

    ``path`` and ``index`` (0-based record index in that file; None for a whole-file problem)
    locate it; ``problem`` says what is wrong.
    """

    def __init__(self, path: str, index: int | None, problem: str):
        self.path, self.index, self.problem = path, index, problem
        where = path if index is None else f"{path}, record {index}"
        super().__init__(f"{where}: {problem}")


def read_records(path: str, digest=None) -> Iterator[tuple[int, bytes]]:
    """Yields (byte offset, payload) of every record of one TFRecord file, checking every CRC.

    ``digest`` (a ``hashlib`` object), when given, is updated with every byte read: after the
    last record, it is the file's hash, which the split's manifest lists.

    Raises:
      InvalidRecordError: bad length CRC, bad payload CRC, or a file that ends inside a record,
        naming the index of the record that could not be read and its byte offset.
    """
    with tf.io.gfile.GFile(path, "rb") as f:
        index, offset = 0, 0
        while True:
            header = f.read(_HEADER.size)
            if not header:
                return
            if digest is not None:
                digest.update(header)
            if len(header) < _HEADER.size:
                raise InvalidRecordError(
                    path,
                    index,
                    f"file ends inside a record header at byte {offset} (truncated shard; "
                    "re-run the conversion for this split)",
                )
            length, length_crc = _HEADER.unpack(header)
            if tfrecord_io.masked_crc(header[:8]) != length_crc:
                raise InvalidRecordError(
                    path,
                    index,
                    f"corrupted record length at byte {offset} (CRC32C mismatch; the file is "
                    "damaged: re-copy or re-convert it)",
                )
            payload = f.read(length)
            footer = f.read(_FOOTER.size)
            if digest is not None:
                digest.update(payload)
                digest.update(footer)
            if len(payload) < length or len(footer) < _FOOTER.size:
                raise InvalidRecordError(
                    path,
                    index,
                    f"file ends inside the record starting at byte {offset} (truncated shard; "
                    "re-run the conversion for this split)",
                )
            if tfrecord_io.masked_crc(payload) != _FOOTER.unpack(footer)[0]:
                raise InvalidRecordError(
                    path,
                    index,
                    f"corrupted record data at byte {offset} (CRC32C mismatch; the file is "
                    "damaged: re-copy or re-convert it)",
                )
            yield offset, payload
            index += 1
            offset += _HEADER.size + length + _FOOTER.size


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decoded_sizes(frames: tf.Tensor) -> tf.Tensor:
    """[num_frames, 2] (height, width) of each JPEG, decoded as the input pipeline decodes it."""
    return tf.map_fn(
        lambda frame: tf.shape(tf.io.decode_jpeg(frame, channels=3))[:2],
        frames,
        fn_output_signature=tf.int32,
    )


def check_frames(record: fmt.VideoRecord) -> None:
    """Decodes every JPEG frame of ``record``; raises ValueError naming the first bad frame."""
    for i, frame in enumerate(record.frames):
        if not frame.startswith(_JPEG_START):
            raise ValueError(f"frame {i} is not a JPEG (image/format says JPEG)")
    try:
        sizes = _decoded_sizes(tf.constant(record.frames, dtype=tf.string)).numpy()
    except tf.errors.InvalidArgumentError:
        # Find which frame, one by one (the batched decode only says that one failed).
        for i, frame in enumerate(record.frames):
            try:
                tf.io.decode_jpeg(frame, channels=3)
            except tf.errors.InvalidArgumentError as e:
                reason = e.message.rsplit("}}", 1)[-1].split("[Op:")[0].strip()
                raise ValueError(f"frame {i} does not decode as JPEG ({reason})") from e
        raise
    for i, (height, width) in enumerate(sizes):
        if (height, width) != (record.height, record.width):
            raise ValueError(
                f"frame {i} decodes to {height}x{width} but image/height x image/width say "
                f"{record.height}x{record.width}"
            )


def check_fields(
    record: fmt.VideoRecord, label_map: list[str] | None, seen_labels: dict[int, str]
) -> None:
    """Checks a record's fields against each other and the label map; raises ValueError.

    Without a label map, the same label index must always carry the same text (``seen_labels``,
    updated here, remembers what was seen).
    """
    if not record.frames:
        raise ValueError("the record holds no frames")
    stamps = record.timestamps_us
    for i in range(1, len(stamps)):
        if stamps[i] <= stamps[i - 1]:
            raise ValueError(
                f"timestamps are not increasing: frame {i} at {stamps[i]} us follows "
                f"{stamps[i - 1]} us"
            )
    index, text = record.label_index, record.label_text
    if label_map is not None:
        if not 0 <= index < len(label_map):
            raise ValueError(
                f"label index {index} is outside the label map ({len(label_map)} classes, "
                f"indices 0..{len(label_map) - 1})"
            )
        if label_map[index] != text:
            raise ValueError(
                f"label text {text!r} does not match the label map, which names index {index} "
                f"{label_map[index]!r}"
            )
    else:
        if index < 0:
            raise ValueError(f"label index {index} is negative")
        if seen_labels.setdefault(index, text) != text:
            raise ValueError(
                f"label index {index} carries text {text!r} here but {seen_labels[index]!r} in "
                "an earlier record"
            )
    if record.height <= 0 or record.width <= 0:
        raise ValueError(f"image size {record.height}x{record.width} is not positive")


def parse_record(payload: bytes) -> fmt.VideoRecord:
    """``fmt.deserialize``, with every way it can fail turned into ValueError."""
    try:
        return fmt.deserialize(payload)
    except message.DecodeError as e:
        raise ValueError(f"not a serialized tf.train.SequenceExample ({e})") from e
    except (UnicodeDecodeError, IndexError) as e:
        raise ValueError(f"a feature of the video format is malformed ({e})") from e


def check_manifest(split: str, directory: str, manifest: dict, counts: dict[str, int]) -> None:
    """Shard record counts and format version against the split's manifest (when it has them)."""
    path = fmt.manifest_path(directory, split)
    version = manifest.get("format_version")
    if version is not None and version != fmt.FORMAT_VERSION:
        raise InvalidRecordError(
            path,
            None,
            f"format_version {version} is not the version this tool reads "
            f"({fmt.FORMAT_VERSION}); use the tools of the version that wrote the records",
        )
    for shard in manifest.get("shards", []):
        name, expected = shard.get("path"), shard.get("records")
        shard_path = os.path.join(directory, os.path.basename(str(name)))
        if shard_path in counts and expected is not None and counts[shard_path] != expected:
            raise InvalidRecordError(
                shard_path,
                None,
                f"holds {counts[shard_path]} records but {os.path.basename(path)} says "
                f"{expected} (shard truncated or replaced; re-run the conversion for this split)",
            )
