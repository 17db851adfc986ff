"""The TF Serving export: signatures as saved_model_cli sees them, numbers equal to the Keras
pruned network, warm-up records that run, clear errors, and versions that appear whole."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from stfusion_tf import (
    export,
    model_card,
    preprocessing,
    serving_module,
    serving_warmup,
    version_staging,
)
from stfusion_tf import signatures as api
from stfusion_tf.models import build_network, prune
from stfusion_tf.preprocessing import PreprocessingSpec
from tests.model_fixtures import randomize, tiny_config

CLASSES = ["move_left", "move_right", "still"]
STRATEGY = "st,-|t"  # S+ST in block 1, a both-off transition (empty), ST in block 2
SPEC = PreprocessingSpec(
    num_frames=4,
    stride=2,
    crop_size=16,
    train_short_sides=None,
    eval_short_side=20,
    flip=False,
    mean=(0.5, 0.4, 0.3),
    std=(0.2, 0.25, 0.3),
    fps=None,
    frame_short_side=24,
    jpeg_quality=90,
)
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


@pytest.fixture(scope="module")
def template():
    return randomize(build_network(tiny_config()))


@pytest.fixture(scope="module")
def pruned(template):
    return prune(template, STRATEGY)


@pytest.fixture(scope="module")
def exported(pruned, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    card = {"metrics": {"video_top1@clips=2x1crop": 0.75}, "training_data": ["train-manifest"]}
    path = export.export_saved_model(pruned, SPEC, CLASSES, str(root), "tiny", model_card=card)
    return root, path, export.load(path)


def _run(args):
    result = subprocess.run(args, capture_output=True, text=True, timeout=240)
    return result.returncode, result.stdout, result.stderr


def _clips(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *SPEC.eval_clip_shape)).astype("float32")


def _keras_logits(model, clips):
    return model(preprocessing.normalize(clips, SPEC), training=False).numpy()


def _signature_block(text, name):
    start = text.index(f"signature_def['{name}']")
    end = text.find("signature_def[", start + 1)
    return text[start : end if end > 0 else len(text)]


def test_saved_model_cli_show_lists_both_signatures(exported):
    _, path, _ = exported
    code, out, err = _run([SAVED_MODEL_CLI, "show", "--all", "--dir", path])
    assert code == 0, err
    assert "args_0" not in out and "output_0" not in out
    default = _signature_block(out, "serving_default")
    assert "inputs['clips']" in default
    assert "DT_FLOAT" in default and "shape: (-1, 4, 16, 16, 3)" in default
    frames = _signature_block(out, "serve_frames")
    assert "inputs['frames']" in frames
    assert "DT_STRING" in frames and "shape: (-1, 4)" in frames
    for block in (default, frames):
        for name, dtype in (
            ("probabilities", "DT_FLOAT"),
            ("logits", "DT_FLOAT"),
            ("top_k_classes", "DT_INT32"),
            ("top_k_labels", "DT_STRING"),
        ):
            output = block[block.index(f"outputs['{name}']") :]
            assert output.split("dtype: ")[1].startswith(dtype), (name, block)
            assert output.split("shape: ")[1].startswith("(-1, 3)"), (name, block)
        assert "tensorflow/serving/predict" in block


def test_saved_model_cli_run_equals_the_keras_pruned_network(exported, pruned, tmp_path):
    _, path, _ = exported
    clips = _clips(2)
    np.save(tmp_path / "clips.npy", clips)
    code, _, err = _run(
        [SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve"]
        + ["--signature_def", "serving_default", "--inputs", f"clips={tmp_path / 'clips.npy'}"]
        + ["--outdir", str(tmp_path / "out")]
    )
    assert code == 0, err
    probabilities = np.load(tmp_path / "out" / "probabilities.npy")
    logits = np.load(tmp_path / "out" / "logits.npy")
    expected = _keras_logits(pruned, clips)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(expected).numpy(), atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    top = np.load(tmp_path / "out" / "top_k_classes.npy")
    labels = np.load(tmp_path / "out" / "top_k_labels.npy", allow_pickle=True)
    np.testing.assert_array_equal(top, np.argsort(-expected, axis=1))
    assert [[x.decode() for x in row] for row in labels] == [
        [CLASSES[i] for i in row] for row in top
    ]


def test_jpeg_signature_agrees_with_the_float_signature(exported):
    _, _, served = exported
    # Square frames at the eval short side: the frames signature's resize is the identity and
    # its centre crop is rows/columns 2..17, which the float clip gets directly.
    rng = np.random.default_rng(3)
    base = rng.uniform(40, 215, (1, 5, 5, 3))
    frames = np.stack(
        [
            tf.image.resize(base + 20 * t, (20, 20), method="bilinear").numpy()
            for t in range(SPEC.num_frames)
        ],
        axis=1,
    )[0]  # [T, 20, 20, 3], smooth
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    jpegs = np.array([[tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]], dtype=object)
    from_jpegs = served.serve_frames(jpegs)
    # The frames sent are these clips up to JPEG's loss (quality 95, chroma at half resolution:
    # ~5 levels on average here). Comparing the model's outputs on the two would measure how
    # sensitive its random weights are, not the signature: the check is on the pixels ...
    decoded = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs[0]])
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 8
    # ... and then exactly: the decoded JPEGs through the float signature give the same numbers.
    exact = served.serve_clips(decoded[None, :, 2:18, 2:18, :].astype(np.float32))
    np.testing.assert_allclose(from_jpegs["logits"], exact["logits"], atol=1e-4, rtol=1e-4)


def test_warmup_records_are_prediction_logs_that_run(exported):
    _, path, served = exported
    records = list(
        tf.data.TFRecordDataset(os.path.join(path, "assets.extra", "tf_serving_warmup_requests"))
    )
    seen = []
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        signature = request.model_spec.signature_name
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        outputs = served.signature(signature)(**{k: tf.constant(v) for k, v in inputs.items()})
        batch = next(iter(inputs.values())).shape[0]
        assert outputs["probabilities"].shape == (batch, 3)
        np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
        seen.append((signature, batch))
    assert sorted(seen) == sorted(
        (s, b) for s in (api.SERVING_DEFAULT, api.SERVE_FRAMES) for b in (1, 2, 4)
    )


def test_wrong_shape_or_dtype_is_a_clear_error(exported):
    _, _, served = exported
    clips = served.signature(api.SERVING_DEFAULT)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, 4, 16, 16, 3\]"):
        clips(clips=tf.zeros([1, 5, 16, 16, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, 4, 16, 16, 3\]"):
        clips(clips=tf.zeros([1, 4, 20, 20, 3]))
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError), match="float"):
        clips(clips=tf.zeros([1, 4, 16, 16, 3], tf.int32))
    frames = served.signature(api.SERVE_FRAMES)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"`frames` must have shape \[batch, 4\]"
    ):
        frames(frames=tf.constant([[b"x"] * 3]))


def _frames(n=4, height=24, width=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, height, width, 3)).astype(np.uint8)


def _encoded(frames, encode=tf.io.encode_jpeg):
    return [encode(f).numpy() for f in frames]


def _with_jpeg_size(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` whose frame header (SOF0) claims ``height`` x ``width``: what a decoder would
    allocate for, without the bytes of such an image."""
    sof = jpeg.index(b"\xff\xc0") + 5
    return jpeg[:sof] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[sof + 4 :]


def _bmp(frame) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, "BMP")
    return out.getvalue()


@pytest.mark.parametrize(
    "clips, message",
    [
        (np.full([1, 4, 16, 16, 3], np.nan), r"`clips` must hold finite numbers.*NaN"),
        (np.full([2, 4, 16, 16, 3], np.inf), r"`clips` must hold finite numbers.*Inf"),
        (np.zeros([4, 16, 16, 3]), r"shape \[batch, 4, 16, 16, 3\].*\] \[4 16 16 3\]"),
        (np.zeros([1, 1, 4, 16, 16, 3]), r"shape \[batch, 4, 16, 16, 3\]"),
        (np.zeros([0, 4, 16, 16, 3]), r"shape \[batch, 4, 16, 16, 3\], batch >= 1"),
    ],
    ids=["nan", "inf", "rank-4", "rank-6", "empty-batch"],
)
def test_hostile_clips_are_refused_with_a_message(exported, clips, message):
    _, _, served = exported
    clips_signature = served.signature(api.SERVING_DEFAULT)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        clips_signature(clips=tf.constant(clips, tf.float32))


def _hostile_frames():
    frames = _frames()
    jpegs, pngs = _encoded(frames), _encoded(frames, tf.io.encode_png)
    not_an_image = r"not a JPEG/PNG image.*\] \[\[{}\]\]"
    cut_short = r"cut short \(no end-of-image marker\).*\] \[\[{}\]\]"
    return {
        "bmp": ([jpegs[:2] + [_bmp(frames[2])] + jpegs[3:]], not_an_image.format("0 2")),
        "gif": ([jpegs[:3] + [b"GIF89a" + jpegs[3][6:]]], not_an_image.format("0 3")),
        "random": ([[np.random.default_rng(1).bytes(400)] + jpegs[1:]], not_an_image.format("0 0")),
        "empty": ([jpegs, jpegs[:3] + [b""]], not_an_image.format("1 3")),
        "truncated-jpeg": (
            [jpegs, jpegs[:1] + [jpegs[1][:300]] + jpegs[2:]],
            cut_short.format("1 1"),
        ),
        "truncated-png": ([pngs[:2] + [pngs[2][:-20]] + pngs[3:]], cut_short.format("0 2")),
        "oversized": (
            [jpegs[:1] + [_with_jpeg_size(j, 8000, 8000) for j in jpegs[1:]]],
            r"at most 4194304 pixels.*\] \[\[0 1\]\[0 2\]\[0 3\]\] \[\[8000 8000\]",
        ),
        "mixed-sizes": (
            [jpegs[:2] + _encoded(_frames(2, 20, 32)), jpegs],
            r"all frames of a clip must have one size.*\] \[\[0 2\]\[0 3\]\] \[\[20 32\]",
        ),
        "rank-1": (jpegs, r"`frames` must have shape \[batch, 4\].*\] \[4\]"),
    }


@pytest.mark.parametrize("case", list(_hostile_frames()))
def test_hostile_frames_are_refused_naming_clip_and_frame(exported, case):
    """Each message is the one TF Serving returns as the request's INVALID_ARGUMENT status; the
    [clip, frame] indices of the offending frames follow it."""
    _, _, served = exported
    frames, message = _hostile_frames()[case]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served.signature(api.SERVE_FRAMES)(frames=tf.constant(frames, tf.string))


def test_png_and_jpeg_with_trailing_bytes_are_served_as_before(exported):
    """PNG is accepted on purpose (lossless; the same decoder), and a JPEG followed by padding
    (as some MJPEG sources write it) is the same JPEG: the same numbers as the pixels sent as
    floats, bit for bit as the bare JPEG."""
    _, _, served = exported
    frames = _frames(height=20, width=20, seed=2)
    pngs = served.serve_frames([_encoded(frames, tf.io.encode_png)])
    floats = served.serve_clips(frames[None, :, 2:18, 2:18, :].astype(np.float32))
    np.testing.assert_allclose(pngs["logits"], floats["logits"], atol=1e-4, rtol=1e-4)
    jpegs = _encoded(frames)
    padded = served.serve_frames([[j + b"\0" * 16 for j in jpegs]])
    for name, value in served.serve_frames([jpegs]).items():
        np.testing.assert_array_equal(padded[name], value)


def test_max_frame_pixels_is_set_at_export(pruned):
    """A smaller limit (here one pixel less than the frames) refuses what the default serves."""
    module = serving_module.ServingModule(pruned, SPEC, CLASSES, max_frame_pixels=24 * 32 - 1)
    jpegs = tf.constant([_encoded(_frames())])
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most 767 pixels"):
        module.frames_signature(jpegs)
    with pytest.raises(ValueError, match="max_frame_pixels"):
        serving_module.ServingModule(pruned, SPEC, CLASSES, max_frame_pixels=0)


def test_model_card_assets_and_embedded_contract(exported, pruned):
    _, path, served = exported
    card = json.load(open(os.path.join(path, export.MODEL_CARD_FILENAME)))
    assert card["model_name"] == "tiny" and card["version"] == 1
    assert card["max_frame_pixels"] == 2048 * 2048
    assert card["strategy"] == STRATEGY
    assert card["clip_shape"] == [4, 16, 16, 3]
    assert card["classes"] == CLASSES and card["num_classes"] == 3
    assert card["preprocessing"] == SPEC.to_dict()
    assert card["metrics"] == {"video_top1@clips=2x1crop": 0.75}
    assert card["training_data"] == ["train-manifest"]
    cost = card["cost"]
    assert 0 < cost["macs"] < cost["template_macs"]
    assert cost["flops"] == 2 * cost["macs"]
    assert cost["params"] == sum(int(np.prod(w.shape)) for w in pruned.trainable_weights)
    assert 0 < cost["macs_saving"] < 1
    assert served.spec == SPEC and served.class_names == CLASSES
    assets = os.path.join(path, "assets")
    assert open(os.path.join(assets, "labels.txt")).read().splitlines() == CLASSES
    assert (
        PreprocessingSpec.from_dict(json.load(open(os.path.join(assets, "preprocessing.json"))))
        == SPEC
    )


def test_batch_norms_after_convolutions_are_folded_out_of_the_export(pruned):
    """The served network carries the stem's and the post-sum batch norms inside its convs'
    kernels and biases (batch_norm_folding.py), not as variables; the others stay."""
    module = serving_module.ServingModule(pruned, SPEC, CLASSES)
    names = {v.name.split(":")[0] for v in module.network_variables}
    folded = ["stem_bn", "block1_layer1_bn", "block2_layer1_bn"]
    assert set(folded) <= {layer.name for layer in pruned.layers}
    assert not any(name.startswith(f"{bn}/") for name in names for bn in folded)
    assert {"stem_conv/bias", "block1_layer1_s/bias", "head_bn/moving_mean"} <= names
    clips = _clips(2, seed=5)
    np.testing.assert_allclose(
        module.clips_signature(clips)[api.LOGITS],
        _keras_logits(pruned, clips),
        rtol=1e-4,
        atol=1e-4,
    )


def test_template_is_refused(template, tmp_path):
    with pytest.raises(ValueError, match="template, not a pruned network"):
        export.export_saved_model(template, SPEC, CLASSES, str(tmp_path), "tiny")
    assert not os.listdir(tmp_path)


def test_spec_that_does_not_fit_the_network_is_refused(pruned, tmp_path):
    import dataclasses

    other = dataclasses.replace(SPEC, num_frames=8)
    with pytest.raises(ValueError, match="does not take the spec's eval clips"):
        export.export_saved_model(pruned, other, CLASSES, str(tmp_path), "tiny")
    with pytest.raises(ValueError, match="3 outputs but 2 class names"):
        export.export_saved_model(pruned, SPEC, CLASSES[:2], str(tmp_path), "tiny")


def _killed_export(final) -> str:
    """The staging folder of an export SIGKILLed while it wrote ``final``: a real one, made by
    the code an export runs, in a process that dies holding its lock."""
    code = (
        "import os, signal\n"
        "from stfusion_tf import version_staging\n"
        f"with version_staging.staged_version({str(final)!r}) as staging:\n"
        "    open(os.path.join(staging, 'saved_model.pb'), 'wb').write(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=repo).returncode == -9
    (staging,) = [n for n in os.listdir(os.path.dirname(final)) if n.endswith(".tmp")]
    return staging


class _Abandoned(Exception):
    pass


def test_versions_are_never_overwritten_and_a_crash_leaves_no_version(
    exported, pruned, monkeypatch, caplog
):
    """A failed export removes its staging folder; a killed one cannot, so the next export
    removes it (one log line), but not a live export's, not any other folder, not a version."""
    root, path, _ = exported
    with pytest.raises(FileExistsError, match="never overwritten"):
        export.export_saved_model(pruned, SPEC, CLASSES, str(root), "tiny", version=1)
    model_dir = root / "tiny"
    dead = _killed_export(model_dir / "5")
    os.makedirs(model_dir / ".not-staging")

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(serving_warmup, "write_warmup_requests", crash)
    with pytest.raises(_Abandoned), version_staging.staged_version(str(model_dir / "9")) as live:
        with pytest.raises(RuntimeError, match="disk full"):
            export.export_saved_model(pruned, SPEC, CLASSES, str(root), "tiny")
        # The dead export's folder is gone, the live one's stays (it holds its lock).
        assert sorted(os.listdir(model_dir)) == sorted(
            [".not-staging", os.path.basename(live), "1"]
        )
        raise _Abandoned  # the live export fails too: its folder goes
    (record,) = [r for r in caplog.records if r.name == "stfusion.export"]
    assert "removed 1 staging folder(s)" in record.getMessage() and dead in record.getMessage()
    os.rmdir(model_dir / ".not-staging")
    # Nothing half-written: only version 1, whole, no staging folder left behind.
    assert sorted(os.listdir(model_dir)) == ["1"]
    assert export.existing_versions(str(model_dir)) == [1]
    assert export.load(path).class_names == CLASSES


def _save_checkpoint(model, directory, phase):
    from stfusion_tf import checkpoints

    metadata = checkpoints.make_metadata(
        spec=SPEC,
        labels=CLASSES,
        network_config=model.config.to_dict(),
        strategy=None if model.strategy is None else str(model.strategy),
        fingerprint={"id": "feedface"},
        phase=phase,
    )
    return checkpoints.make_checkpoint(model, metadata).save(str(directory / "ckpt"))


def test_export_from_a_checkpoint_takes_everything_from_its_metadata(pruned, template, tmp_path):
    phase = tmp_path / "finetune" / "checkpoints"
    _save_checkpoint(pruned, phase, "finetune")
    results = tmp_path / "results.json"
    metrics = {"video_top1@clips=10x1crop": 0.5, "video_top1@clips=1x1crop": 0.4}
    entry = {"strategy": STRATEGY, "weights": "fine-tuned pruned network", "metrics": metrics}
    results.write_text(
        json.dumps({"labels": CLASSES, "protocol": "clips=10x1crop", "models": {"opt": entry}})
    )
    path = export.export_checkpoint(
        str(tmp_path / "finetune"), str(tmp_path / "serving"), "ckpt", results=str(results)
    )
    assert path == str(tmp_path / "serving" / "ckpt" / "1")
    card = json.load(open(os.path.join(path, export.MODEL_CARD_FILENAME)))
    assert card["metrics"] == metrics and card["fingerprint"] == {"id": "feedface"}
    assert card["phase"] == "finetune" and card["strategy"] == STRATEGY
    served = export.load(path)
    assert served.spec == SPEC and served.class_names == CLASSES
    clips = _clips(1, seed=4)
    np.testing.assert_allclose(
        served.serve_clips(clips)["logits"], _keras_logits(pruned, clips), atol=1e-4, rtol=1e-4
    )
    # A checkpoint of the template (warm-up / search) is not a served model.
    _save_checkpoint(template, tmp_path / "search", "search")
    with pytest.raises(ValueError, match="holds the template.*train/finetune"):
        export.export_checkpoint(str(tmp_path / "search"), str(tmp_path / "serving"), "t")
    with pytest.raises(ValueError, match="another label vocabulary"):
        model_card.results_card({"labels": ["x"]}, STRATEGY, CLASSES)


def test_the_saved_graph_is_inference_only(exported):
    """What the signatures run draws no gate noise and changes no variable (no KL term, no
    optimizer, no batch-statistics update): every op of every function they reach."""
    from tensorflow.core.protobuf import saved_model_pb2

    _, path, _ = exported
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        meta_graph = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0]
    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = {node.name: node for node in graph.node}
    ops, seen = set(), set()

    def visit(node_defs):
        for node in node_defs:
            ops.add(node.op)
            for attr in node.attr.values():
                name = attr.func.name
                if name and name not in seen:
                    seen.add(name)
                    visit(functions[name].node_def)

    for signature in (api.SERVING_DEFAULT, api.SERVE_FRAMES):
        outputs = meta_graph.signature_def[signature].outputs.values()
        visit([nodes[t.name.split(":")[0]] for t in outputs])
    # The network is there (its 3D convolutions run as 2D ones when exported on a CPU) ...
    assert {"Conv2D", "Conv3D"} & ops
    changes = {op for op in ops if "Random" in op or "Assign" in op or "Apply" in op}
    assert not changes  # ... and nothing that draws noise or changes a variable
