"""The serving client's requests: REST JSON and gRPC ``PredictRequest`` built from a video's
JPEGs, checked field by field, and sent over real HTTP and gRPC to local stand-ins that answer
as TF Serving does by running the exported SavedModel (no TF Serving binary here); the dry run's
output read back; a server that does not answer is one line on stderr (the command in the
test's process: tests/commands.py)."""

import base64
import concurrent.futures
import http.server
import json
import os
import socket
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from stfusion_tf import export, predict, signatures
from stfusion_tf import serving_client as client
from stfusion_tf.models import build_network, prune
from stfusion_tf.preprocessing import PreprocessingSpec
from tests import commands, video_fixtures
from tests.model_fixtures import randomize, tiny_config

CLASSES = ["a", "b", "c"]
SPEC = PreprocessingSpec(
    num_frames=4,
    stride=1,
    crop_size=16,
    train_short_sides=None,
    eval_short_side=16,
    flip=False,
    frame_short_side=16,
    jpeg_quality=90,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("videos") / "video.mp4")
    video_fixtures.write_good_video(path, frames=12)
    return path


@pytest.fixture(scope="module")
def clips(video):
    return predict.video_clips(video, SPEC, num_clips=2)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    pruned = prune(randomize(build_network(tiny_config())), "s,st|t")
    root = str(tmp_path_factory.mktemp("serving"))
    return export.export_saved_model(pruned, SPEC, CLASSES, root, "tiny")


@pytest.fixture(scope="module")
def served(export_dir):
    return export.load(export_dir)


@pytest.fixture(scope="module")
def card(export_dir):
    with open(os.path.join(export_dir, "model_card.json")) as f:
        return json.load(f)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rest_body_carries_every_frame_as_b64(clips):
    body = signatures.rest_body(clips)
    assert body["signature_name"] == "serve_frames"
    assert len(body["instances"]) == 2
    for instance, clip in zip(body["instances"], clips, strict=True):
        assert list(instance) == ["frames"] and len(instance["frames"]) == SPEC.num_frames
        assert [base64.b64decode(f["b64"]) for f in instance["frames"]] == list(clip)
    json.dumps(body)  # JSON-serialisable as is


def test_rest_body_for_float_clips_and_bad_input():
    body = signatures.rest_body(np.ones((1, 4, 16, 16, 3)), signature_name="serving_default")
    assert np.asarray(body["instances"][0]["clips"]).shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match=r"\[num_clips, frames\] JPEG bytes"):
        signatures.rest_body([b"a", b"b"])
    with pytest.raises(ValueError, match="signature_name"):
        signatures.rest_body([[b"a"]], signature_name="predict")


def test_predict_request_holds_the_clips_as_a_string_tensor(clips):
    request = signatures.predict_request("tiny", {"frames": clips}, version=3)
    assert request.model_spec.name == "tiny" and request.model_spec.version.value == 3
    assert request.model_spec.signature_name == "serve_frames"
    proto = request.inputs["frames"]
    assert proto.dtype == tf.string.as_datatype_enum
    assert [d.size for d in proto.tensor_shape.dim] == [2, SPEC.num_frames]
    np.testing.assert_array_equal(tf.make_ndarray(proto), clips)
    # It survives the wire format.
    again = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    np.testing.assert_array_equal(tf.make_ndarray(again.inputs["frames"]), clips)


def test_rest_url():
    assert client.rest_url("localhost:8501", "m") == "http://localhost:8501/v1/models/m:predict"
    assert client.rest_url("https://host/", "m", 2) == "https://host/v1/models/m/versions/2:predict"


class _RestHandler(http.server.BaseHTTPRequestHandler):
    """Answers ``:predict`` as TF Serving's REST API does (row format), from the SavedModel."""

    served = None
    paths: list = []

    def do_POST(self):
        type(self).paths.append(self.path)
        if not self.path.startswith("/v1/models/tiny"):
            self._answer(404, {"error": "Servable not found for request: Latest(other)"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        frames = [[base64.b64decode(f["b64"]) for f in i["frames"]] for i in body["instances"]]
        try:
            outputs = self.served.serve_frames(np.asarray(frames, dtype=object))
        except tf.errors.InvalidArgumentError as e:
            self._answer(400, {"error": e.message})
            return

        def row(value):
            return [x.decode() for x in value] if value.dtype == object else value.tolist()

        merged = [{k: row(v[i]) for k, v in outputs.items()} for i in range(len(frames))]
        self._answer(200, {"predictions": merged})

    def _answer(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_rest_round_trip_gives_the_saved_models_logits(clips, served):
    _RestHandler.served = served
    server = http.server.HTTPServer(("127.0.0.1", 0), _RestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = client.rest_url(f"127.0.0.1:{server.server_port}", "tiny")
        answer = client.post_rest(url, signatures.rest_body(clips))
        np.testing.assert_allclose(
            client.clip_logits(answer), served.serve_frames(clips)["logits"], rtol=1e-6
        )
        assert _RestHandler.paths[-1] == "/v1/models/tiny:predict"
        with pytest.raises(client.ServerError, match=r"answered 400.*\[batch, 4\]"):
            client.post_rest(url, signatures.rest_body([[b"x", b"y"]]))
        other = client.rest_url(f"127.0.0.1:{server.server_port}", "other")
        with pytest.raises(client.ServerError, match="does not serve the model.*--model_name"):
            client.post_rest(other, signatures.rest_body(clips))
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(client.ServerError, match="cannot reach TF Serving over REST"):
        client.post_rest(url, signatures.rest_body(clips), timeout_s=5)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's gRPC Predict, backed by the SavedModel's signatures."""

    def __init__(self, served):
        self.served = served

    def Predict(self, request, context):
        if request.model_spec.name != "tiny":
            context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(x)")
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = self.served.signature(request.model_spec.signature_name)(**inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def test_grpc_round_trip_gives_the_saved_models_logits(clips, served):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(served), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        request = signatures.predict_request("tiny", {"frames": clips})
        outputs = client.call_grpc(f"127.0.0.1:{port}", request, timeout_s=30)
        other = signatures.predict_request("other", {"frames": clips})
        with pytest.raises(client.ServerError, match="does not serve the model.*--model_name"):
            client.call_grpc(f"127.0.0.1:{port}", other, timeout_s=30)
    finally:
        server.stop(None)
    expected = served.serve_frames(clips)
    np.testing.assert_allclose(client.clip_logits(outputs), expected["logits"], rtol=1e-6)
    assert outputs["top_k_labels"].tolist() == expected["top_k_labels"].tolist()
    result = predict.video_result("video.mp4", client.clip_logits(outputs), CLASSES, 2)
    assert result.protocol == "clips=2x1crop" and len(result.top_k) == 3


def test_rest_dry_run_prints_the_request_head_as_json(video, clips, card, capsys):
    status = client.serve_videos([video], card, "localhost:8501", "rest", "tiny", 3, 2, True)
    assert status == 0
    (line,) = capsys.readouterr().out.splitlines()
    head = json.loads(line)
    assert head["url"] == "http://localhost:8501/v1/models/tiny/versions/3:predict"
    assert (head["model_name"], head["version"]) == ("tiny", 3)
    assert head["signature_name"] == "serve_frames" and head["instances"] == 2
    assert head["instance_shape"] == {"frames": [SPEC.num_frames]}
    body = signatures.rest_body(clips)
    assert head["body_bytes"] == len(json.dumps(body))
    first = body["instances"][0]["frames"][0]["b64"]
    (shown, _) = head["first_values"]["frames"]
    assert shown["b64"] == f"{first[:16]}...({len(first)} chars)"


def test_grpc_dry_run_prints_the_predict_request_without_values(video, clips, card, capsys):
    status = client.serve_videos([video], card, "localhost:8500", "grpc", "tiny", None, 2, True)
    assert status == 0
    out = capsys.readouterr().out
    comment, proto = out.splitlines()
    request = signatures.predict_request("tiny", {"frames": clips})
    assert comment.startswith(f"# {video}: PredictRequest to localhost:8500 ")
    assert f"{request.ByteSize()} bytes, version latest" in comment
    shown = text_format.Parse(out, predict_pb2.PredictRequest())  # the comment line too
    assert shown.model_spec.name == "tiny" and shown.model_spec.signature_name == "serve_frames"
    assert not shown.model_spec.HasField("version")
    tensor = shown.inputs["frames"]
    assert tensor.dtype == tf.string.as_datatype_enum and not tensor.string_val
    assert [d.size for d in tensor.tensor_shape.dim] == [2, SPEC.num_frames]
    assert text_format.MessageToString(shown, as_one_line=True) == proto


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_no_server_is_one_line_saying_what_to_check(video, card, protocol, capsys):
    server = f"127.0.0.1:{_unused_port()}"
    assert client.serve_videos([video], card, server, protocol, "tiny", None, 2) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    own = {"rest": "REST", "grpc": "gRPC"}[protocol]
    assert line.startswith(f"serving_client: cannot reach TF Serving over {own} at ")
    for hint in ("running", "host:port", "gRPC 8500, REST 8501", "--model_name", "--version"):
        assert hint in line


def test_the_command_says_so_without_a_traceback(video, export_dir, capfd):
    """The command line end to end, as in the issue: gRPC to a port where nothing listens."""
    result = commands.run(
        capfd, "stfusion_tf.serving_client", video, "--protocol=grpc",
        f"--model_card={export_dir}/model_card.json", f"--server=127.0.0.1:{_unused_port()}",
        "--num_clips=1",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    ours = [line for line in result.stderr.splitlines() if line.startswith("serving_client")]
    assert len(ours) == 1 and "failed to connect to all addresses" in ours[0], result.stderr
    assert "model_name" in ours[0]
