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
        --model_card=serving/stfusion/1/model_card.json --server=localhost:8501 --protocol=rest

prints one JSON line per video (its top classes). ``--model_name`` defaults to the export's
name (the card's; the name of ``docs/serving/models.config``). A server that does not answer is
one line on stderr saying what to check (is it running, host:port, the REST port 8501 vs the gRPC
port 8500, the model's name and version), exit status 1.

``--dry_run`` sends nothing: it prints the request it would send for each video, with the
tensor values left out, so a request can be checked without a server:

- REST: one JSON line, ``{"video", "method", "url", "model_name", "version", "signature_name",
  "instances", "instance_shape", "first_values", "body_bytes"}`` (``first_values``: the first
  two values of the first instance, each cut to its first characters and its length);
- gRPC: two lines, a comment ``# <video>: PredictRequest to <host:port> ...`` then the
  ``PredictRequest`` in protobuf text format on one line (model spec, and per input its name,
  dtype and shape), which ``google.protobuf.text_format.Parse`` reads back, the comment included.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np

from stfusion_tf.signatures import FRAMES_INPUT, LOGITS, predict_request, rest_body

REST, GRPC = "rest", "grpc"
# How many values of the first instance a dry run shows, and how many characters of each.
_PREVIEW_VALUES, _PREVIEW_CHARS = 2, 16


def rest_url(server: str, model_name: str, version: int | None = None) -> str:
    """``http://<server>/v1/models/<name>[/versions/<v>]:predict``."""
    base = server if server.startswith(("http://", "https://")) else f"http://{server}"
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
    return f"{base.rstrip('/')}{path}:predict"


class ServerError(RuntimeError):
    """TF Serving did not answer a request as asked; ``str(error)`` is one line saying why and
    what to check."""


def unreachable_message(protocol: str, server: str, reason: object) -> str:
    """What to check when nothing answers at ``server``, on one line.

    The usual causes: no server running, another host:port, or the other protocol's port (TF
    Serving takes gRPC on ``--port``, 8500 by default, and REST on ``--rest_api_port``, 8501; a
    REST request to the gRPC port fails, and so does the reverse).

    >>> unreachable_message("grpc", "localhost:8501", "failed to connect")[:57]
    'cannot reach TF Serving over gRPC at localhost:8501 (fail'
    """
    own, other = (("gRPC", REST), ("REST", GRPC))[protocol != GRPC]
    return (
        f"cannot reach TF Serving over {own} at {server} ({' '.join(str(reason).split())}): is "
        f"tensorflow_model_server running, at this host:port, and is it the {own} port (gRPC "
        f"8500, REST 8501 by default; --protocol={other} for the other)? Then check "
        "--model_name and --version."
    )


def unknown_model_message(server: str, reason: object) -> str:
    """What to check when the server answers but serves no such model or version, on one line."""
    return (
        f"TF Serving at {server} does not serve the model asked for "
        f"({' '.join(str(reason).split())}): check --model_name against the names of its "
        "--model_config_file (docs/serving/models.config) and --version against the version "
        "folders under its base_path."
    )


def post_rest(url: str, body: dict, timeout_s: float = 60.0) -> dict:
    """POSTs ``body`` to a TF Serving REST URL; returns the decoded JSON answer.

    Raises a ``ServerError`` carrying the server's error text (TF Serving puts the reason, e.g. a
    wrong input shape, in ``{"error": ...}``), or saying what to check when no server answers.
    """
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as e:
        text = " ".join(e.read().decode(errors="replace").split())
        if e.code == 404:
            raise ServerError(unknown_model_message(url, text)) from e
        raise ServerError(f"TF Serving at {url} answered {e.code}: {text}") from e
    except urllib.error.URLError as e:
        raise ServerError(unreachable_message(REST, url, e.reason)) from e
    except (http.client.HTTPException, ConnectionError) as e:  # e.g. the gRPC port: not HTTP/1
        raise ServerError(unreachable_message(REST, url, e.__class__.__name__)) from e


def grpc_error_message(target: str, code_name: str, details: str) -> str:
    """One line for a gRPC status ``code_name`` (``UNAVAILABLE``, ...) from ``target``."""
    if code_name == "UNAVAILABLE":  # "failed to connect to all addresses", a REST port, ...
        return unreachable_message(GRPC, target, details)
    if code_name == "NOT_FOUND":  # "Servable not found for request: Latest(name)"
        return unknown_model_message(target, details)
    return f"TF Serving at {target} answered {code_name}: {' '.join(str(details).split())}"


def call_grpc(target: str, request, timeout_s: float = 60.0) -> dict[str, np.ndarray]:
    """Sends ``request`` to ``target`` (``host:8500``); returns output name -> array.

    Raises a ``ServerError`` (``grpc_error_message``) when the call fails.
    """
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    try:
        with grpc.insecure_channel(target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(request, timeout_s)
    except grpc.RpcError as e:
        raise ServerError(grpc_error_message(target, e.code().name, e.details())) from e
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def clip_logits(response: dict) -> np.ndarray:
    """``[num_clips, classes]`` logits of a REST answer (``predictions``) or gRPC outputs."""
    if "predictions" in response:
        return np.asarray([p[LOGITS] for p in response["predictions"]], dtype=np.float64)
    return np.asarray(response[LOGITS], dtype=np.float64)


def _elided(value):
    """A value cut to its first characters and its length (``{"b64": ...}`` keeps its key)."""
    if isinstance(value, dict):
        return {key: _elided(v) for key, v in value.items()}
    text = str(value)
    if len(text) <= _PREVIEW_CHARS:
        return value
    return f"{text[:_PREVIEW_CHARS]}...({len(text)} chars)"


def rest_preview(url: str, body: dict, model_name: str, version: int | None) -> dict:
    """The head of a REST request: where it goes, its signature, how many instances of which
    shape, and the first values of the first instance, cut short (the module docstring).

    >>> body = {"signature_name": "serve_frames", "instances": [{"frames": [{"b64": "a" * 20}]}]}
    >>> head = rest_preview("http://h:8501/v1/models/m:predict", body, "m", None)
    >>> head["instance_shape"], head["first_values"]
    ({'frames': [1]}, {'frames': [{'b64': 'aaaaaaaaaaaaaaaa...(20 chars)'}]})
    """
    first = body["instances"][0]
    return {
        "method": "POST",
        "url": url,
        "model_name": model_name,
        "version": version,
        "signature_name": body["signature_name"],
        "instances": len(body["instances"]),
        "instance_shape": {name: list(np.shape(value)) for name, value in first.items()},
        "first_values": {
            name: [_elided(v) for v in value[:_PREVIEW_VALUES]] for name, value in first.items()
        },
        "body_bytes": len(json.dumps(body)),
    }


def grpc_preview(target: str, request, video: str) -> str:
    """A ``PredictRequest`` without its tensor values: a ``#`` comment line, then the request in
    protobuf text format on one line (the module docstring)."""
    from google.protobuf import text_format

    summary = type(request)()
    summary.CopyFrom(request)
    for tensor in summary.inputs.values():
        for field in ("string_val", "float_val", "tensor_content"):
            tensor.ClearField(field)
    version = request.model_spec.version.value if request.model_spec.HasField("version") else None
    return (
        f"# {video}: PredictRequest to {target} (PredictionService/Predict, "
        f"{request.ByteSize()} bytes, version {version or 'latest'}; tensor values left out)\n"
        + text_format.MessageToString(summary, as_one_line=True)
    )


def serve_videos(videos, card: dict, server: str, protocol: str, model_name: str,
                 version: int | None, num_clips: int, dry_run: bool = False) -> int:  # fmt: skip
    """Sends each video's clips to TF Serving (or, ``dry_run``, prints the request) and prints
    its prediction as a JSON line; returns the exit status.

    A video that cannot be read is reported and the others are still sent (status 1); a server
    that does not answer stops the command at once (one line on stderr, status 1).
    """
    from stfusion_tf import predict
    from stfusion_tf.preprocessing import PreprocessingSpec

    spec = PreprocessingSpec.from_dict(card["preprocessing"])
    failed = 0
    for path in videos:
        try:
            clips = predict.video_clips(path, spec, num_clips)
        except predict.UnreadableVideoError as e:
            print(f"serving_client: cannot read {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        try:
            if protocol == REST:
                url, body = rest_url(server, model_name, version), rest_body(clips)
                if dry_run:
                    print(
                        json.dumps({"video": path, **rest_preview(url, body, model_name, version)})
                    )
                    continue
                response = post_rest(url, body)
            else:
                request = predict_request(model_name, {FRAMES_INPUT: clips}, version=version)
                if dry_run:
                    print(grpc_preview(server, request, path))
                    continue
                response = call_grpc(server, request)
        except ServerError as e:
            print(f"serving_client: {e}", file=sys.stderr)
            return 1
        result = predict.video_result(path, clip_logits(response), card["classes"], num_clips)
        print(json.dumps(result.to_dict()))
    return 1 if failed else 0


def read_model_card(path: str) -> dict:
    """The export's ``model_card.json``; a missing or unreadable one is a usage error."""
    from absl import app

    try:
        with open(path) as file:
            card = json.load(file)
    except (OSError, ValueError) as e:
        raise app.UsageError(
            f"--model_card={path}: cannot read it ({e.__class__.__name__}): give the "
            "model_card.json of an export (<workspace>/serving/<model_name>/<version>/)."
        ) from None
    missing = [key for key in ("preprocessing", "classes") if key not in card]
    if missing:
        raise app.UsageError(
            f"--model_card={path} has no {', '.join(missing)}: it is not the model_card.json "
            "of an export of stfusion_tf.export."
        )
    return card


def main(argv):
    from absl import app, flags

    f = flags.FLAGS
    videos = argv[1:]
    if not videos:
        raise app.UsageError("give the video files: python -m stfusion_tf.serving_client VIDEO...")
    missing = [v for v in videos if not os.path.exists(v)]
    if missing:
        raise app.UsageError(f"no such video file: {missing[0]}")
    card = read_model_card(f.model_card)
    model_name = f.model_name or card.get("model_name")
    if not model_name:
        raise app.UsageError(f"--model_card={f.model_card} names no model: give --model_name.")
    if f.protocol == GRPC:  # its requests are TensorFlow protos: TensorFlow loads, quietly
        from tfrecords_tools import command_line

        command_line.import_quietly("tensorflow")
    return serve_videos(
        videos, card, f.server, f.protocol, model_name, f.version or None, f.num_clips, f.dry_run
    )


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model_card", None, "model_card.json of the export (the spec, classes).")
    flags.DEFINE_string(
        "model_name", None, "The model's name in TF Serving's models.config; default: the card's."
    )
    flags.DEFINE_integer("version", 0, "A version to ask for; 0: the server's latest.")
    flags.DEFINE_string("server", "localhost:8501", "host:port (8501 REST, 8500 gRPC).")
    flags.DEFINE_enum("protocol", REST, [REST, GRPC], "REST (urllib) or gRPC.")
    flags.DEFINE_integer("num_clips", 10, "Clips per video (the evaluation protocol's).")
    flags.DEFINE_bool(
        "dry_run", False, "Print the request each video would send (values cut short); send none."
    )
    flags.mark_flags_as_required(["model_card"])


def cli() -> None:
    """The command line: ``python -m stfusion_tf.serving_client`` and the ``stfusion-serving-client`` script."""
    from tfrecords_tools import command_line

    _define_flags()
    command_line.run(main, takes_arguments=True)


if __name__ == "__main__":
    cli()
