"""``python -m stfusion_tf.predict`` on real video files: top-5 JSON per good video, a clear
message and a non-zero exit for a broken one, the others still predicted."""

import io
import json

import numpy as np
import pytest

from stfusion_tf import evaluation, export, predict
from stfusion_tf.models import build_network, prune
from stfusion_tf.preprocessing import PreprocessingSpec
from tests import commands, video_fixtures
from tests.model_fixtures import randomize, tiny_config
from tfrecords_tools import video_io

CLASSES = ["a", "b", "c", "d", "e", "f"]
SPEC = PreprocessingSpec(
    num_frames=4,
    stride=2,
    crop_size=16,
    train_short_sides=None,
    eval_short_side=16,
    flip=False,
    frame_short_side=20,
    jpeg_quality=85,
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    config = tiny_config(num_classes=len(CLASSES))
    pruned = prune(randomize(build_network(config)), "t,t|s")
    root = tmp_path_factory.mktemp("serving")
    return export.export_saved_model(pruned, SPEC, CLASSES, str(root), "tiny", warmup_requests=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    good = [str(folder / f"good_{i}.mp4") for i in range(2)]
    video_fixtures.write_good_video(good[0], frames=20, seed=0)
    video_fixtures.write_good_video(good[1], frames=8, seed=1)  # shorter than 10 clips' span
    broken = {kind: str(folder / f"{kind}.mp4") for kind in ("truncated", "not_a_video", "empty")}
    for kind, path in broken.items():
        video_fixtures.write_broken_video(path, kind)
    return good, broken


def test_clips_are_the_conversions_jpegs_sampled_as_evaluation(videos):
    good, _ = videos
    jpegs = predict.video_frames(good[0], SPEC)
    stored = video_io.encode_video(good[0], video_io.DecodeOptions(short_side=20), 85).jpegs
    assert jpegs == stored  # the bytes make_tfrecords would write
    clips = predict.clip_frames(jpegs, SPEC, num_clips=3)
    # 20 frames, span 7: starts 0, 6.5 -> 7 (rounded half up), 13; stride 2.
    assert clips.shape == (3, 4)
    for clip, start in zip(clips, (0, 7, 13), strict=True):
        assert list(clip) == [jpegs[start + 2 * i] for i in range(4)]


def test_predict_files_prints_top5_and_reports_broken_videos(model_path, videos):
    good, broken = videos
    served = export.load(model_path)
    out, err = io.StringIO(), io.StringIO()
    order = [good[0], broken["truncated"], good[1], broken["not_a_video"], broken["empty"]]
    code = predict.predict_files(
        served, order, num_clips=3, batch_size=2, as_json=True, out=out, err=err
    )
    assert code == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["video"] for line in lines] == good
    for line in lines:
        assert line["protocol"] == "clips=3x1crop"
        probabilities = [entry["probability"] for entry in line["top_k"]]
        assert len(line["top_k"]) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert {entry["label"] for entry in line["top_k"]} <= set(CLASSES)
    messages = err.getvalue()
    for path in broken.values():
        assert f"cannot read {path}" in messages
    assert "empty file" in messages and "3 of 5 videos could not be read" in messages
    assert "warning" not in messages  # 8 and 20 frames: at least one clip (span 7)


def test_a_video_shorter_than_one_clip_is_predicted_with_one_warning(model_path, tmp_path):
    short = str(tmp_path / "short.mp4")
    video_fixtures.write_good_video(short, frames=5, seed=2)
    out, err = io.StringIO(), io.StringIO()
    served = export.load(model_path)
    assert predict.predict_files(served, [short], num_clips=2, out=out, err=err) == 0
    assert err.getvalue() == (
        f"predict: warning: {short} has 5 frames, fewer than one clip spans (4 frames at stride 2: "
        "7): its clips repeat frames, the prediction is less reliable\n"
    )
    assert out.getvalue().startswith(f"{short} (clips=2x1crop)")


def test_video_probabilities_are_the_mean_of_the_clips_softmax(model_path, videos):
    good, _ = videos
    served = export.load(model_path)
    result = predict.predict_video(served, good[0], num_clips=5, batch_size=2)
    clips = predict.video_clips(good[0], SPEC, 5)
    logits = served.serve_frames(clips)["logits"]
    np.testing.assert_allclose(result.clip_logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        result.probabilities, evaluation.softmax(logits).mean(axis=0), rtol=1e-6
    )
    assert result.top_k[0][0] == CLASSES[int(np.argmax(result.probabilities))]


def test_predict_command_line(model_path, videos, capfd):
    good, broken = videos
    result = commands.run(
        capfd,
        "stfusion_tf.predict",
        *(good[0], broken["truncated"], good[1]),
        *(f"--model={model_path}", "--json", "--num_clips=2"),
    )
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["video"] for line in lines] == [good[0], good[1]]
    assert all(line["protocol"] == "clips=2x1crop" for line in lines)
    assert f"cannot read {broken['truncated']}" in result.stderr


def test_usage_errors_exit_2_without_a_traceback(tmp_path, videos):
    good, _ = videos
    out, err = io.StringIO(), io.StringIO()
    assert predict.run([good[0]], str(tmp_path), out=out, err=err) == 2
    assert "No SavedModel" in err.getvalue() and "stfusion_tf.export" in err.getvalue()
    err = io.StringIO()
    assert predict.run([], str(tmp_path), out=out, err=err) == 2
    assert "usage" in err.getvalue() and not out.getvalue()
