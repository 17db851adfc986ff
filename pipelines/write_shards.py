"""``WriteShards``: converted videos -> the sharded TFRecord files of each split, as one Beam
transform.

    videos --KeyByShard--+--GroupByShard--> Write --> (split, shard info)
    EveryShard ----------+

Each video's staged record goes to shard ``md5(path) mod num_shards[split]`` (``shard_index``),
and every shard is written by one worker that concatenates its staged records sorted by path:
the same input and options give the same bytes, on any runner. A shard is named by its place and
its content, ``<split>-00000-of-000NN-<first 8 hex digits of its SHA-256>.tfrecord``
(``format.shard_name``): written under ``<split>-00000-of-000NN.tfrecord``, then renamed once its
hash is known, in the staging folder. So the same bytes get the same name, and a new shard never
takes the name of an old one with other bytes: the commit can move the new split in beside the
old one before switching the manifest. ``EveryShard`` makes each shard of each split exist, empty
when no video falls into it, so a split has exactly the ``num_shards`` files its name says. The shard infos it outputs (name,
records, size, SHA-256 of the file) are what a split's manifest lists (``WriteSplitReports``), and
readers read the listed shards only (``tfrecords_tools.manifest``).

The shards go into the job's staging folder, not the output folder: the driver moves a split's
shards into place when the whole job has succeeded, its manifest last
(``pipelines.commit_splits``), so a job that fails or is killed never leaves half a split beside
the previous one.
"""

import hashlib
import os
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import video_conversion
from tfrecords_tools import files
from tfrecords_tools import format as fmt

# Staged records are copied into their shard in pieces of this size: a record is a whole video
# (megabytes; gigabytes for an hour of video), and reading it whole cost a fresh allocation and
# its page faults per video.
COPY_CHUNK = 2**20


def shard_index(path: str, num_shards: int) -> int:
    """A stable shard for a video (Python's ``hash`` is salted per process, md5 is not)."""
    return int(hashlib.md5(path.encode()).hexdigest(), 16) % num_shards


def unnamed_shard_path(output_dir: str, split: str, index: int, num_shards: int) -> str:
    """Where a shard is written before its hash, so its name, is known."""
    return os.path.join(output_dir, f"{split}-{index:05d}-of-{num_shards:05d}{fmt.SHARD_SUFFIX}")


def _hashed(chunks: Iterator[bytes], digest) -> Iterator[bytes]:
    """``chunks``, each added to ``digest`` on its way to the file (the file is read once)."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _staged_chunks(paths: list[str]) -> Iterator[bytes]:
    """The staged records' bytes, file after file, in ``COPY_CHUNK`` pieces."""
    for path in paths:
        try:
            f = FileSystems.open(path)
        except OSError as e:  # FileSystems raises BeamIOError, an OSError
            raise RuntimeError(
                f"The staged record {path} is gone: the staging folder was deleted while the job "
                "ran (or another job shares --output_dir). Convert again."
            ) from e
        with f:
            while chunk := f.read(COPY_CHUNK):
                yield chunk


def write_shard(item, output_dir: str):
    """``((split, index, num_shards), {"records": [(path, staged path)], ...})`` -> the shard
    file, its staged records in path order, named by its content; yields ``(split, shard
    info)``."""
    (split, index, num_shards), grouped = item
    staged = [p for _, p in sorted(grouped["records"])]
    written = unnamed_shard_path(output_dir, split, index, num_shards)
    digest = hashlib.sha256()
    size = files.write_atomically(written, _hashed(_staged_chunks(staged), digest))
    path = os.path.join(output_dir, fmt.shard_name(split, index, num_shards, digest.hexdigest()))
    # A retried bundle renames equal bytes over equal bytes.
    FileSystems.rename([written], [path])
    yield (
        split,
        {
            "path": os.path.basename(path),
            "records": len(staged),
            "bytes": size,
            "sha256": digest.hexdigest(),
        },
    )


def _shard_key(video: video_conversion.ConvertedVideo, num_shards: dict[str, int]):
    n = num_shards[video.split]
    return (video.split, shard_index(video.path, n), n), (video.path, video.staged_path)


class WriteShards(beam.PTransform):
    """Writes the staged records of converted videos into each split's shards.

    Args:
      output_dir: where the shards go (the conversion's staging folder).
      num_shards: shards per split (``{split: n}``); every split listed gets its ``n`` files,
        empty ones included.

    Input: a PCollection of ``video_conversion.ConvertedVideo`` (their staged records must exist).
    Output: a PCollection of ``(split, {"path": file name, "records": n, "bytes": size,
    "sha256": hex digest of the file})``, one per shard.

    Example (one converted video whose staged record holds 10 bytes: 26 framed):

    >>> import tempfile
    >>> from tfrecords_tools import tfrecord_io
    >>> output_dir = tempfile.mkdtemp()
    >>> staged = os.path.join(output_dir, "staged.tfrecord")
    >>> tfrecord_io.write_tfrecord_file(staged, [b"one record"])
    26
    >>> video = video_conversion.ConvertedVideo("train", "shoot/v1.mp4", "shoot", staged, 8, 24, 32)
    >>> with beam.Pipeline() as pipeline:
    ...     _ = (
    ...         pipeline
    ...         | beam.Create([video])
    ...         | WriteShards(output_dir, {"train": 1})
    ...         | beam.Map(print)
    ...     )
    ('train', {'path': 'train-00000-of-00001-35e6....tfrecord', 'records': 1, 'bytes': 26,
     'sha256': '35e6...958'})
    >>> sorted(n for n in os.listdir(output_dir) if n.startswith("train"))
    ['train-00000-of-00001-35e6....tfrecord']
    """

    def __init__(self, output_dir: str, num_shards: dict[str, int]):
        super().__init__()
        self.output_dir = output_dir
        self.num_shards = dict(num_shards)

    def expand(self, videos):
        records = videos | "KeyByShard" >> beam.Map(_shard_key, self.num_shards)
        every_shard = videos.pipeline | "EveryShard" >> beam.Create(
            [
                ((split, i, n), None)
                for split, n in sorted(self.num_shards.items())
                for i in range(n)
            ]
        )
        return (
            {"records": records, "every_shard": every_shard}
            | "GroupByShard" >> beam.CoGroupByKey()
            | "Write" >> beam.FlatMap(write_shard, self.output_dir)
        )
