r"""Model benchmarks, measured side by side in one run, printed as ratios.

    python bench/model.py                    # everything (a few minutes on a 2-core CPU)
    python bench/model.py --sections=peak,train --train_steps=5

Sections:
1. ``peak``: this machine's float32 matmul rate (a chain of n x n ``tf.matmul`` in one
   ``tf.function``), the reference every other number is a fraction of.
2. ``train``: training-step throughput (clips/s) of the tiny template (blocks 2,2,2,2, growth 8,
   8x32x32 clips) and of a mid-size template (blocks 3,6,12,8, growth 16, 8x64x64), with the gates
   sampling (v-DropPath training: forward, KL terms, backward, SGD update). Achieved FLOP/s counts
   3 x the forward FLOPs per clip (the usual rule: the backward pass costs about twice the
   forward, one for input gradients and one for weight gradients) with forward FLOPs = 2 x MACs
   from ``stfusion_tf.flops``; printed as a fraction of the matmul peak (goal for the mid-size
   template: >= 35%). ``jit_compile`` on/off is compared with the gates sampling.
3. ``infer``: inference time of pruned networks (S, ST, S+ST all the way and random strategies)
   against the full template (gates off), next to their MACs share of the template (goal: time
   share <= 1.2 x MACs share, i.e. pruning saves time in proportion to what it removes). "S+ST
   all the way" computes what the template computes (without gate layers): its ratio is the
   noise floor of the run.
4. ``ops``: where the time goes: single layers of the mid-size template's shapes (stem, 1x1x1,
   3x1x1, 1x3x3 convs, each as ``tf.nn.conv3d`` and as the template runs it on a CPU,
   ``layers/planar_conv3d.py``; the 1x1x1 conv written as a matmul, BN+ReLU), each as a
   fraction of the peak.

Timings are the minimum over ``--repeats`` rounds, models interleaved within a round, so a burst
of load from another process on a shared machine hits all of them alike. Flags exist only here
(a bench script is an entry point).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as stfusion_tf/__init__.py does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from stfusion_tf import flops  # noqa: E402
from stfusion_tf.layers.planar_conv3d import planar_conv3d  # noqa: E402
from stfusion_tf.models.template import (  # noqa: E402
    TemplateConfig,
    build_network,
    fusion_block_sizes,
)
from stfusion_tf.strategy import FusionStrategy, sample_strategies  # noqa: E402

_SECTIONS = flags.DEFINE_list("sections", ["peak", "train", "infer", "ops"], "What to measure.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timing rounds; the minimum is reported.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 3, "Training steps per timing round.")
_INFER_STEPS = flags.DEFINE_integer("infer_steps", 5, "Inference batches per timing round.")
_INFER_REPEATS = flags.DEFINE_integer(
    "infer_repeats", 5, "Timing rounds of `infer` (cheap, and its ratios need the minimum)."
)
_JIT = flags.DEFINE_bool(
    "compare_jit", True, "Also time the tiny and mid train steps (gates sampling) with jit_compile."
)
_SAMPLES = flags.DEFINE_integer("random_strategies", 3, "Random strategies in `infer`.")
_MATMUL_N = flags.DEFINE_integer("matmul_size", 2048, "n of the n x n matmul peak.")

TINY = TemplateConfig(
    num_classes=10, blocks=(2, 2, 2, 2), growth_rate=8, stem_filters=16, input_frames=8,
    input_size=32, dropout=0.0, num_examples=1000, seed=0,
)  # fmt: skip
MID = TemplateConfig(
    num_classes=10, blocks=(3, 6, 12, 8), growth_rate=16, stem_filters=32, input_frames=8,
    input_size=64, dropout=0.0, num_examples=1000, seed=0,
)  # fmt: skip
BATCH = {"tiny": 16, "mid": 8}


def _clip_shape(config):
    return (config.input_frames, config.input_size, config.input_size, 3)


def _timed(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        out = fn()
    _sync(out)
    return (time.perf_counter() - start) / steps


def _sync(out):
    # Eager results may still be computing; pulling one value to the host waits for them.
    first = tf.nest.flatten(out)[0]
    first.numpy() if hasattr(first, "numpy") else None


def _interleaved(fns: dict, steps: int, repeats: int) -> dict:
    """Seconds per call of each fn: min over ``repeats`` rounds, fns interleaved in a round."""
    for fn in fns.values():  # warm-up: trace and first run
        _sync(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, steps))
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


# --- 1. matmul peak ---------------------------------------------------------------------------


PEAK = "matmul peak"


def matmul_fn(n: int):
    """``(fn, flop)``: a dependent chain of n x n float32 matmuls (nothing to share between them)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n]) / np.sqrt(n)
    chain = 8

    @tf.function
    def run(x):
        for _ in range(chain):
            x = tf.matmul(x, b)
        return x

    return (lambda: run(a)), chain * 2 * n**3


def with_peak(fns: dict, steps: int, repeats: int) -> tuple[dict, float]:
    """Times ``fns`` interleaved with the matmul peak; returns (times, peak GFLOP/s).

    On a shared machine the peak moves with the load of other processes; measured in the same
    rounds as the workload, the fraction of peak stays meaningful.
    """
    fn, flop = matmul_fn(_MATMUL_N.value)
    results = _interleaved({PEAK: fn, **fns}, steps, repeats)
    peak = flop / results.pop(PEAK)[0] / 1e9
    return results, peak


# --- 2. training step -------------------------------------------------------------------------


def make_train_step(model, jit_compile: bool):
    optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        # With the gates off, the drop logits take no part in the loss: nothing to update.
        pairs = [
            (g, v) for g, v in zip(grads, model.trainable_variables, strict=True) if g is not None
        ]
        optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        return loss

    return step


def bench_train(repeats: int, steps: int, compare_jit: bool):
    print("\n== training step (gates sampling; FLOPs = 3 x forward = 6 x MACs per clip) ==")
    rows = []
    cases = [("tiny", TINY, "sample", False)]
    if compare_jit:
        cases.append(("tiny", TINY, "sample", True))
    cases += [
        ("tiny", TINY, "off", False),
        ("mid", MID, "sample", False),
        ("mid", MID, "off", False),
    ]
    if compare_jit:
        cases.append(("mid", MID, "sample", True))
    fns, meta = {}, {}
    rng = np.random.default_rng(0)
    for name, config, mode, jit in cases:
        model = build_network(config, gate_mode=mode)
        macs = flops.count_macs(model, _clip_shape(config))
        batch = BATCH[name]
        x = tf.constant(rng.standard_normal((batch, *_clip_shape(config))), tf.float32)
        y = tf.constant(rng.integers(0, config.num_classes, batch), tf.int32)
        step = make_train_step(model, jit)
        label = f"{name} gates={mode} jit={'on' if jit else 'off'}"
        fns[label] = lambda step=step, x=x, y=y: step(x, y)
        meta[label] = (macs, batch)
    results, peak_gflops = with_peak(fns, steps, repeats)
    print(f"matmul peak in the same rounds: {peak_gflops:.1f} GFLOP/s")
    print(
        f"{'case':32s} {'batch':>5s} {'fwd GMACs/clip':>14s} {'clips/s':>8s} {'GFLOP/s':>8s} {'of peak':>8s}"
    )
    for label, (best, median) in results.items():
        macs, batch = meta[label]
        clips = batch / best
        gflops = 6 * macs * clips / 1e9
        rows.append((label, clips, gflops / peak_gflops))
        print(
            f"{label:32s} {batch:5d} {macs / 1e9:14.4f} {clips:8.1f} {gflops:8.2f} "
            f"{100 * gflops / peak_gflops:7.1f}%   (median round {batch / median:.1f} clips/s)"
        )
    mid = [f"{fraction:.0%} ({label})" for label, _, fraction in rows if label.startswith("mid")]
    print(f"goal: mid-size training step >= 35% of the matmul peak; measured {', '.join(mid)}")
    return rows


# --- 3. inference of pruned networks -----------------------------------------------------------


def bench_infer(repeats: int, steps: int, num_random: int):
    config = MID
    clip = _clip_shape(config)
    batch = BATCH["mid"]
    sizes = fusion_block_sizes(config)
    strategies = {"template (gates off)": None}
    for unit in ("S+ST", "ST", "S"):
        strategies[f"{unit} all the way"] = FusionStrategy.all_the_way(unit, sizes)
    p = np.full((sum(sizes), 2), 0.3)
    # A transition with no unit passes nothing on: the network's output no longer depends on the
    # clip and TensorFlow constant-folds everything after it (a "40x faster" strategy that only
    # predicts one class). Such strategies are degenerate; time only the others.
    transitions = np.cumsum(sizes)[:-1] - 1
    candidates = sample_strategies(p, sizes, 20 * num_random, seed=0, unique=True)
    usable = [s for s in candidates if all(s.units[i] != "none" for i in transitions)]
    for i, s in enumerate(usable[:num_random]):
        strategies[f"random #{i} (p=0.3)"] = s
    x = tf.constant(np.random.default_rng(1).standard_normal((batch, *clip)), tf.float32)
    fns, macs = {}, {}
    for label, strategy in strategies.items():
        model = build_network(config, strategy)
        macs[label] = flops.count_macs(model, clip)
        fn = tf.function(lambda x, model=model: model(x, training=False))
        fns[label] = lambda fn=fn: fn(x)
    results = _interleaved(fns, steps, repeats)
    base_time = results["template (gates off)"][0]
    base_macs = macs["template (gates off)"]
    print(f"\n== inference, mid-size template, batch {batch} of {'x'.join(map(str, clip))} ==")
    print(f"{'network':22s} {'GMACs/clip':>10s} {'MACs share':>10s} {'ms/batch':>9s} "
          f"{'time share':>10s} {'time/MACs':>9s}  strategy")  # fmt: skip
    rows = []
    for label, (best, _) in results.items():
        m_share, t_share = macs[label] / base_macs, best / base_time
        strategy = strategies[label]
        rows.append((label, m_share, t_share))
        print(
            f"{label:22s} {macs[label] / 1e9:10.3f} {m_share:10.2f} {1e3 * best:9.1f} "
            f"{t_share:10.2f} {t_share / m_share:9.2f}  {'' if strategy is None else strategy}"
        )
    worst = max(t / m for _, m, t in rows)
    print(f"goal: time share <= 1.2 x MACs share for every pruned network; worst: {worst:.2f}x "
          f"({'met' if worst <= 1.2 else 'NOT met'})")  # fmt: skip
    return rows


# --- 4. single ops -----------------------------------------------------------------------------

# (label, input [B, T, H, W, C], kernel [t, h, w], filters, spatial stride): the stem of both
# templates and the branch / 1x3x3 convs of the mid-size template's block 2.
OPS = (
    ("stem 5x7x7/2, tiny", (16, 8, 32, 32, 3), (5, 7, 7), 16, 2),
    ("stem 5x7x7/2, mid", (8, 8, 64, 64, 3), (5, 7, 7), 32, 2),
    ("S 1x1x1 128->64, mid", (8, 8, 16, 16, 128), (1, 1, 1), 64, 1),
    ("T 3x1x1 128->64, mid", (8, 8, 16, 16, 128), (3, 1, 1), 64, 1),
    ("1x3x3 64->16, mid", (8, 8, 16, 16, 64), (1, 3, 3), 16, 1),
)


def bench_ops(repeats: int):
    """Forward and forward + kernel gradient of single convs, each as ``tf.nn.conv3d`` and as
    the template runs it on a CPU (``planar_conv3d``: one 2D convolution), BN+ReLU and a 1x1x1
    matmul."""
    rng = np.random.default_rng(0)
    cases = {}
    for label, shape, k, filters, stride in OPS:
        x = tf.constant(rng.standard_normal(shape), tf.float32)
        w = tf.Variable(rng.standard_normal((*k, shape[-1], filters)) * 0.05, dtype=tf.float32)
        out_positions = shape[0] * shape[1] * (shape[2] // stride) * (shape[3] // stride)
        macs = out_positions * int(np.prod(k)) * shape[-1] * filters
        for how, conv in (
            ("Conv3D", lambda x, w, s: tf.nn.conv3d(x, w, (1, *s, 1), "SAME")),
            ("planar", lambda x, w, s: planar_conv3d(x, w, s, "same")),
        ):
            s = (1, stride, stride)
            fwd = tf.function(lambda x, w=w, s=s, conv=conv: conv(x, w, s))

            @tf.function
            def grad(x, w=w, s=s, conv=conv):
                with tf.GradientTape() as tape:
                    y = conv(x, w, s)
                return tape.gradient(y, w)

            cases[f"{label} {how} fwd"] = (lambda fwd=fwd, x=x: fwd(x), macs)
            cases[f"{label} {how} fwd+dW"] = (lambda grad=grad, x=x: grad(x), 2 * macs)
    x = tf.constant(rng.standard_normal((8, 8, 16, 16, 128)), tf.float32)
    w = tf.constant(rng.standard_normal((128, 64)) * 0.05, tf.float32)
    mm = tf.function(lambda x: tf.reshape(tf.reshape(x, [-1, 128]) @ w, [8, 8, 16, 16, 64]))
    cases["S 1x1x1 as a matmul fwd"] = (lambda: mm(x), 8 * 8 * 16 * 16 * 128 * 64)
    bn = keras.layers.BatchNormalization()
    bn.build(x.shape)
    bn_fn = tf.function(lambda x: tf.nn.relu(bn(x, training=True)))
    cases["BN(train)+ReLU 128ch fwd"] = (lambda: bn_fn(x), 0)
    results, peak = with_peak({k: v[0] for k, v in cases.items()}, 1, repeats)
    print(f"\n== single ops (peak in the same rounds: {peak:.1f} GFLOP/s) ==")
    for label, (best, _) in results.items():
        macs = cases[label][1]
        rate = 2 * macs / best / 1e9
        extra = f"{rate:8.2f} GFLOP/s {100 * rate / peak:6.1f}% of peak" if macs else ""
        print(f"{label:30s} {1e3 * best:9.2f} ms {extra}")


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # one tf.function per model is not "retracing"
    sections = set(_SECTIONS.value)
    unknown = sections - {"peak", "train", "infer", "ops"}
    if unknown:
        raise app.UsageError(f"Unknown --sections: {sorted(unknown)}. Received: {_SECTIONS.value}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
          f"devices: {[d.device_type for d in tf.config.list_physical_devices()]}")  # fmt: skip
    if "peak" in sections:
        _, peak = with_peak({}, 2, _REPEATS.value)
        print(f"\n== matmul peak: {peak:.1f} GFLOP/s float32 ({_MATMUL_N.value}^2 chain) ==")
    if "train" in sections:
        bench_train(_REPEATS.value, _TRAIN_STEPS.value, _JIT.value)
    if "infer" in sections:
        bench_infer(_INFER_REPEATS.value, _INFER_STEPS.value, _SAMPLES.value)
    if "ops" in sections:
        bench_ops(_REPEATS.value)


if __name__ == "__main__":
    app.run(main)
