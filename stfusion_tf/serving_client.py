"""A thin client of TF Serving for an exported model: JPEG frames of a video over REST or gRPC.

Why a client at all: the served ``serve_frames`` signature takes JPEG-encoded frames, so a
client sends a few kilobytes per frame instead of float clips; but WHICH frames, at which size
and JPEG quality, is the model's preprocessing contract. The client therefore cuts a video into
clips with the same code as ``python -m stfusion_tf.predict`` (``predict.video_clips``, the
conversion's PyAV decoder and the evaluation's clip sampler) and reads the contract from the
export's ``model_card.json``; it never holds a frame rate or a size of its own.

Two transports, the two TF Serving offers:

- REST (``http://host:8501/v1/models/<name>:predict``): JSON with ``{"b64": ...}`` for the
  bytes, sent with ``urllib`` (no extra dependency);
- gRPC (``host:8500``): a ``tensorflow_serving.apis.predict_pb2.PredictRequest`` (the
  ``tensorflow-serving-api`` package, pinned) over ``grpcio`` (installed with TensorFlow).

The request builders (``rest_body``, ``predict_request``) and the signature and tensor names are
``stfusion_tf.signatures``'s, shared with the export (``stfusion_tf.serving_warmup`` builds its
warm-up requests with ``predict_request``); this module holds the transports and the command.

Entry point (flags only here)::

    python -m stfusion_tf.serving_client video.mp4 \\
        --model_card=serving/ucf101/1/model_card.json --model_name=ucf101 \\
        --server=localhost:8501 --protocol=rest
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import numpy as np

from stfusion_tf.signatures import FRAMES_INPUT, LOGITS, predict_request, rest_body


def rest_url(server: str, model_name: str, version: int | None = None) -> str:
    """``http://<server>/v1/models/<name>[/versions/<v>]:predict``."""
    base = server if server.startswith(("http://", "https://")) else f"http://{server}"
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
    return f"{base.rstrip('/')}{path}:predict"


def post_rest(url: str, body: dict, timeout_s: float = 60.0) -> dict:
    """POSTs ``body`` to a TF Serving REST URL; returns the decoded JSON answer.

    Raises a ``RuntimeError`` carrying the server's error text (TF Serving puts the reason, e.g.
    a wrong input shape, in ``{"error": ...}``).
    """
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"TF Serving at {url} answered {e.code}: {e.read().decode()}") from e
    except urllib.error.URLError as e:
        raise RuntimeError(
            f"Cannot reach TF Serving at {url} ({e.reason}): is tensorflow_model_server running "
            "with --rest_api_port?"
        ) from e


def call_grpc(target: str, request, timeout_s: float = 60.0) -> dict[str, np.ndarray]:
    """Sends ``request`` to ``target`` (``host:8500``); returns output name -> array."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout_s)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def clip_logits(response: dict) -> np.ndarray:
    """``[num_clips, classes]`` logits of a REST answer (``predictions``) or gRPC outputs."""
    if "predictions" in response:
        return np.asarray([p[LOGITS] for p in response["predictions"]], dtype=np.float64)
    return np.asarray(response[LOGITS], dtype=np.float64)


def main(argv):
    import grpc
    from absl import flags

    from stfusion_tf import predict
    from stfusion_tf.preprocessing import PreprocessingSpec

    f = flags.FLAGS
    videos = argv[1:]
    if not videos:
        print(
            "usage: python -m stfusion_tf.serving_client VIDEO... --model_card=...", file=sys.stderr
        )
        return 2
    with open(f.model_card) as file:
        card = json.load(file)
    spec = PreprocessingSpec.from_dict(card["preprocessing"])
    classes = card["classes"]
    failed = 0
    for path in videos:
        try:
            clips = predict.video_clips(path, spec, f.num_clips)
        except predict.UnreadableVideoError as e:
            print(f"serving_client: cannot read {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        try:
            if f.protocol == "rest":
                url = rest_url(f.server, f.model_name, f.version or None)
                response = post_rest(url, rest_body(clips))
            else:
                request = predict_request(
                    f.model_name, {FRAMES_INPUT: clips}, version=f.version or None
                )
                response = call_grpc(f.server, request)
        except RuntimeError as e:
            print(f"serving_client: {e}", file=sys.stderr)
            return 1
        except grpc.RpcError as e:  # details(): the server's reason, or why it is unreachable
            print(f"serving_client: gRPC {f.server}: {e.details()}", file=sys.stderr)
            return 1
        result = predict.video_result(path, clip_logits(response), classes, f.num_clips)
        print(json.dumps(result.to_dict()))
    return 1 if failed else 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model_card", None, "model_card.json of the export (the spec, classes).")
    flags.DEFINE_string("model_name", None, "The model's name in TF Serving's models.config.")
    flags.DEFINE_integer("version", 0, "A version to ask for; 0: the server's latest.")
    flags.DEFINE_string("server", "localhost:8501", "host:port (8501 REST, 8500 gRPC).")
    flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (urllib) or gRPC.")
    flags.DEFINE_integer("num_clips", 10, "Clips per video (the evaluation protocol's).")
    flags.mark_flags_as_required(["model_card", "model_name"])


def cli() -> None:
    """The command line: ``python -m stfusion_tf.serving_client`` and the ``stfusion-serving-client`` script."""
    from tfrecords_tools import command_line

    _define_flags()
    command_line.run(main, takes_arguments=True)


if __name__ == "__main__":
    cli()
