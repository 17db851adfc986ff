"""Writing TFRecord files, each atomically (``files.write_atomically``: local disk or gs://).

The Beam job writes each shard itself, records sorted by file name, so the same input and options
give byte-identical shards on any runner (Beam's own ``WriteToTFRecord`` assigns records to shards
round-robin from a random start, so its shards differ from run to run). The framing is TFRecord's:
length, masked CRC32C of the length, data, masked CRC32C of the data (``google-crc32c``), so
``tf.data.TFRecordDataset`` and every other TFRecord reader reads the files.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import google_crc32c

from tfrecords_tools import files


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data`` (written after the length and after the payload)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def framed_record(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One record in TFRecord framing, as (header, data, footer) for the writer to write one after
    the other: concatenating them would copy a video's record (megabytes) twice more."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)), data, struct.pack("<I", masked_crc(data))


def write_tfrecord_file(path: str, records: Iterable[bytes]) -> int:
    """Writes serialized records to one TFRecord file, atomically; returns its size in bytes.

    No ``fsync``: the conversion writes one such file per video (a staged record, copied into
    its shard later), and a job cut by a power loss converts again anyway."""
    chunks = (chunk for r in records for chunk in framed_record(r))
    return files.write_atomically(path, chunks, fsync=False)
