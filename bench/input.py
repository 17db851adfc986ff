r"""Input pipeline throughput against its raw limit, measured side by side in one run.

    python bench/input.py                       # ~1-2 minutes on a 2-core CPU
    python bench/input.py --steps=10 --repeats=2 --no_train
    python bench/input.py --paper_scale --steps=4 --batch_size=8   # 16x224x224 clips

1. Data: a synthetic dataset of real H.264 videos (``pipelines.synthetic``, task ``mixed``,
   128x170 frames) converted by the Beam job (``convert.run_conversion``, short side 128) into a
   temporary folder (or ``--records_dir`` when given: any converted split ``train``). With
   ``--paper_scale``: 256x340 frames converted at short side 256, as a Kinetics conversion
   stores them (``configs/kinetics400.cfg``).
2. ``pipeline``: ``stfusion_tf.data.train_dataset`` with 8-frame clips at stride 2, scale jitter
   {128, 144, 160}, random 112 x 112 crops, flips, ImageNet normalisation, batches of
   ``--batch_size``: clips/s. With ``--paper_scale``, the paper's Kinetics clips: 16 frames at
   stride 2, scale jitter {256, 288, 320}, random 224 x 224 crops.
3. ``raw decode limit``: ``tf.io.decode_jpeg`` of the same stored frames (same size, T per clip)
   in a tf.data map with the same parallelism and nothing else (no parse, no sampling, no
   resize, no crop, no normalisation, no batching of clips): clips/s = frames/s / T. Also the
   one-thread eager loop, for scale.
4. ``train step`` (if ``stfusion_tf.models.template`` imports; not at paper scale, where the
   accelerator's rate is the question): a tiny template (blocks 2,2,2,2, growth 8) with gates
   sampling, forward + KL + backward + SGD on 8x112x112 clips: the clips/s a training step
   consumes. input / train > 1 means training would not wait for input.

Each case is reported as clips per wall second, as CPU milliseconds per clip (process CPU
time, every thread: on a machine shared with other processes it moves less with their load)
and as clips per core-second (1000 / CPU ms per clip): what one core makes, so a trainer that
consumes R clips/s needs R / (clips per core-second) cores of input (README, "Input from
tf.data service"). Goal: pipeline >= 0.9 x raw decode limit. The pipeline decodes only the crop
window of each chosen frame (``tf.io.decode_and_crop_jpeg``), so it could beat a decoder that
decodes whole frames; it resizes and normalises too. Rounds interleave the cases (each on a
fresh iterator, alone: ``_rate``) and the best round of each is reported, so a burst of load
from another process hits them alike; the numbers are still noisy on a shared machine. Flags
exist only here (a bench script is an entry point).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as stfusion_tf/__init__.py does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pipelines import convert, synthetic  # noqa: E402
from stfusion_tf import data, preprocessing  # noqa: E402
from tfrecords_tools import format as fmt  # noqa: E402

_RECORDS = flags.DEFINE_string("records_dir", None, "Converted records (default: generate).")
_VIDEOS = flags.DEFINE_integer("videos_per_class", 6, "Synthetic videos per class (4 classes).")
_FRAMES = flags.DEFINE_integer("frames", 48, "Frames per synthetic video.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Clips per batch.")
_STEPS = flags.DEFINE_integer("steps", 20, "Batches timed per round.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timing rounds; the best is reported.")
_TRAIN = flags.DEFINE_bool("train", True, "Also time a tiny template's training step.")
_PAPER = flags.DEFINE_bool(
    "paper_scale", False, "The paper's 16x224x224 clips of 256x340 frames (no train step)."
)

SPEC = preprocessing.PreprocessingSpec(
    num_frames=8, stride=2, crop_size=112, train_short_sides=(128, 144, 160), eval_short_side=128
)
# configs/kinetics400.cfg's clips.
PAPER_SPEC = preprocessing.PreprocessingSpec(
    num_frames=16, stride=2, crop_size=224, train_short_sides=(256, 288, 320), eval_short_side=256
)


def make_records(workdir: str, height: int, width: int) -> str:
    videos, records = os.path.join(workdir, "videos"), os.path.join(workdir, "records")
    spec = synthetic.SyntheticSpec(
        task="mixed",
        videos_per_class=_VIDEOS.value,
        frames=_FRAMES.value,
        height=height,
        width=width,
    )
    start = time.perf_counter()
    synthetic.write_dataset(videos, spec)
    options = convert.ConvertOptions(short_side=height)
    convert.run_conversion("folder", videos, records, num_shards=4, options=options)
    print(f"data: {4 * spec.videos_per_class} videos x {spec.frames} frames of {height}x{width}, "
          f"generated and converted in {time.perf_counter() - start:.1f}s")  # fmt: skip
    return records


def _stored_jpegs(pattern: str) -> list[bytes]:
    jpegs = []
    for serialized in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)):
        jpegs.extend(fmt.deserialize(serialized.numpy()).frames)
    return jpegs


def _rate(make_iterator, steps: int, items_per_step: int) -> tuple[float, float]:
    """(items per wall second, items per CPU second of this process, all threads) of a fresh
    iterator from ``make_iterator``, after as many untimed steps (tracing, autotuning, the
    shuffle fill, and what it prefetched in the meantime). The iterator is dropped at the end:
    a tf.data iterator left alive keeps filling its prefetch buffers while the other cases are
    timed, taking their CPU and then serving its own next steps from memory."""
    iterator = make_iterator()
    for _ in range(steps):
        out = next(iterator)
    tf.nest.flatten(out)[0].numpy()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        out = next(iterator)
    tf.nest.flatten(out)[0].numpy()
    items = steps * items_per_step
    return items / (time.perf_counter() - start), items / (time.process_time() - cpu)


def make_train_step(config):
    import keras

    from stfusion_tf.models.template import build_network

    model = build_network(config, gate_mode="sample")
    optimizer = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step


def main(argv):
    del argv
    spec, (height, width) = (PAPER_SPEC, (256, 340)) if _PAPER.value else (SPEC, (128, 170))
    batch, steps, frames_per_clip = _BATCH.value, _STEPS.value, spec.num_frames
    with tempfile.TemporaryDirectory() as workdir:
        records = _RECORDS.value or make_records(workdir, height, width)
        pattern = fmt.shard_pattern(records, "train")
        examples = data.num_examples(records, "train")
        num_classes = len(data.class_names(records))
        jpegs = _stored_jpegs(pattern)
        height, width = tf.io.extract_jpeg_shape(jpegs[0]).numpy()[:2]
        print(f"stored frames: {len(jpegs)} JPEGs of {height}x{width}, "
              f"{np.mean([len(j) for j in jpegs]) / 1024:.1f} KiB each; clips: {spec}")  # fmt: skip

        pipeline = data.train_dataset(pattern, spec, batch, seed=0, shuffle_buffer=4 * batch)
        raw = (
            tf.data.Dataset.from_tensor_slices(jpegs)
            .repeat()
            .map(lambda j: tf.io.decode_jpeg(j, channels=3), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(frames_per_clip * batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        loop_jpegs = [tf.constant(j) for j in jpegs[: frames_per_clip * batch]]

        def loop():
            for j in loop_jpegs:
                out = tf.io.decode_jpeg(j, channels=3)
            return out

        cases = {
            "pipeline (train_dataset)": lambda: _rate(lambda: iter(pipeline), steps, batch),
            "raw decode limit (tf.data map)": lambda: _rate(lambda: iter(raw), steps, batch),
            "raw decode, 1-thread eager loop": lambda: _rate(
                lambda: iter(loop, None), max(1, steps // 4), batch
            ),
        }
        train_config = None
        if _TRAIN.value and not _PAPER.value:
            try:
                from stfusion_tf.models.template import TemplateConfig

                train_config = TemplateConfig(
                    num_classes=num_classes, blocks=(2, 2, 2, 2), growth_rate=8,
                    stem_filters=16, input_frames=8, input_size=112, dropout=0.0,
                    num_examples=examples, seed=0,
                )  # fmt: skip
            except ImportError as error:
                print(f"train step: skipped ({error})")
        if train_config is not None:
            step = make_train_step(train_config)
            x = tf.random.normal([batch, 8, 112, 112, 3])
            y = tf.zeros([batch], tf.int32)
            train_steps = max(2, steps // 4)
            cases["train step (tiny template)"] = lambda: _rate(
                lambda: iter(lambda: step(x, y), None), train_steps, batch
            )

        best = {name: (0.0, 0.0) for name in cases}
        for _ in range(_REPEATS.value):
            for name, case in cases.items():
                best[name] = tuple(map(max, best[name], case()))

    header = f"{'case':36s} {'clips/s':>9s} {'frames/s':>9s} {'CPU ms/clip':>12s}"
    print(f"\n{header} {'clips per core-second':>22s}")
    for name, (rate, cpu_rate) in best.items():
        print(f"{name:36s} {rate:9.1f} {rate * frames_per_clip:9.1f} {1e3 / cpu_rate:12.2f} "
              f"{cpu_rate:22.2f}")  # fmt: skip
    (pipe, pipe_cpu), (limit, limit_cpu) = (
        best["pipeline (train_dataset)"],
        best["raw decode limit (tf.data map)"],
    )
    print(f"\npipeline / raw decode limit: {pipe / limit:.2f} in clips/s, "
          f"{pipe_cpu / limit_cpu:.2f} in clips per CPU-second (goal >= 0.9)")  # fmt: skip
    if "train step (tiny template)" in best:
        train = best["train step (tiny template)"][0]
        verdict = "not input bound" if pipe >= train else "INPUT BOUND"
        print(f"pipeline / training consumption: {pipe / train:.2f} ({verdict}; both measured "
              f"alone on the same {os.cpu_count()} cores: together they share them)")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
