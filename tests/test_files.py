"""tfrecords_tools.files: the atomic writer, the staged folder and JSON lines, on local disk and on
an in-memory remote file system (TensorFlow's ``ram://``, the code path of ``gs://``)."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from tfrecords_tools import files


def _remote_folder() -> str:
    return f"ram://test-files-{uuid.uuid4().hex}"


def _listing(folder: str) -> list[str]:
    if files.is_remote(folder):
        import tensorflow as tf

        return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(folder))
    return sorted(os.listdir(folder))


@pytest.fixture(params=["local", "remote"])
def folder(request, tmp_path):
    return str(tmp_path) if request.param == "local" else _remote_folder()


def test_writes_the_content_and_leaves_no_temporary_file(folder):
    path = os.path.join(folder, "sub", "a.bin")
    assert files.write_atomically(path, b"\x00\x01bytes") == 7
    assert files.read_text(path) == "\x00\x01bytes"
    assert files.write_atomically(path, "é text") == len("é text".encode())
    assert files.read_text(path) == "é text"
    assert files.write_atomically(path, iter([b"ab", "cd", b""])) == 4
    assert files.read_text(path) == "abcd"
    assert _listing(os.path.join(folder, "sub")) == ["a.bin"]


def test_an_existing_file_is_replaced_whole(folder):
    path = os.path.join(folder, "a.txt")
    files.write_atomically(path, "x" * 1000)
    files.write_atomically(path, "short")
    assert files.read_text(path) == "short"


def test_a_failure_in_the_middle_leaves_the_old_file_intact(folder):
    path = os.path.join(folder, "shard.tfrecord")
    files.write_atomically(path, "old content")

    def chunks():
        yield b"new "
        yield b"half"
        raise RuntimeError("the staged record is gone")

    with pytest.raises(RuntimeError, match="the staged record is gone"):
        files.write_atomically(path, chunks())
    assert files.read_text(path) == "old content"
    assert _listing(folder) == ["shard.tfrecord"]


def test_a_failure_before_the_first_write_creates_no_file(tmp_path):
    def chunks():
        raise KeyboardInterrupt
        yield b""

    with pytest.raises(KeyboardInterrupt):
        files.write_atomically(str(tmp_path / "a"), chunks())
    assert os.listdir(tmp_path) == []


def test_the_file_gets_the_processes_default_permissions(tmp_path):
    path = tmp_path / "a"
    files.write_atomically(str(path), "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_is_written_indented_with_sorted_keys(folder):
    path = os.path.join(folder, "best.json")
    files.write_json_atomically(path, {"b": 1, "a": None})
    assert files.read_text(path) == '{\n  "a": null,\n  "b": 1\n}\n'


def test_read_text_of_a_missing_file_raises_file_not_found(folder):
    with pytest.raises(FileNotFoundError):
        files.read_text(os.path.join(folder, "missing.json"))


def test_jsonl_round_trip_and_truncation(folder):
    path = os.path.join(folder, "logs", "history.jsonl")
    records = [{"epoch": e, "loss": 1.0 / e, "name": "ü"} for e in (1, 2, 3)]
    for record in records:
        files.append_jsonl(path, record)
    assert files.read_jsonl(path) == records
    assert files.truncate_jsonl(path, lambda r: r["epoch"] <= 1) == 1
    assert files.read_jsonl(path) == records[:1]
    files.append_jsonl(path, records[1])
    assert files.read_jsonl(path) == records[:2]
    assert files.truncate_jsonl(os.path.join(folder, "none.jsonl"), lambda r: True) == 0
    assert not any(name == "none.jsonl" for name in _listing(folder))


def test_truncate_drops_a_line_cut_by_a_kill(tmp_path):
    path = str(tmp_path / "history.jsonl")
    files.append_jsonl(path, {"epoch": 1})
    with open(path, "a") as f:
        f.write('{"epoch": 2, "lo')  # the process died here
    with pytest.raises(json.JSONDecodeError):
        files.read_jsonl(path)
    assert files.truncate_jsonl(path, lambda r: True) == 1
    assert files.read_jsonl(path) == [{"epoch": 1}]


def test_staged_directory_appears_whole_or_not_at_all(tmp_path):
    # Local only: TensorFlow's ram:// renames no folder's contents (GCS's file system does).
    folder = str(tmp_path)
    final = os.path.join(folder, "models", "1")
    with pytest.raises(ValueError, match="half written"):
        with files.staged_directory(final) as staging:
            files.write_atomically(os.path.join(staging, "saved_model.pb"), b"x")
            raise ValueError("half written")
    assert _listing(os.path.join(folder, "models")) == []
    with files.staged_directory(final) as staging:
        assert os.path.basename(staging).startswith(".")  # never an integer version to TF Serving
        files.write_atomically(os.path.join(staging, "saved_model.pb"), b"x")
    assert _listing(os.path.join(folder, "models")) == ["1"]
    assert files.read_text(os.path.join(final, "saved_model.pb")) == "x"
    with pytest.raises(FileExistsError, match="never replaces"):
        with files.staged_directory(final):
            pass


def test_local_files_do_not_import_tensorflow(tmp_path):
    code = (
        "import sys; from tfrecords_tools import files; "
        f"files.write_json_atomically({str(tmp_path / 'a.json')!r}, {{'a': 1}}); "
        f"files.append_jsonl({str(tmp_path / 'b.jsonl')!r}, {{'a': 1}}); "
        f"files.read_text({str(tmp_path / 'a.json')!r}); "
        "print('tensorflow' in sys.modules, 'apache_beam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
