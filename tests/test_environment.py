"""The pinned stack imports together and agrees on what the project relies on."""

import os
import subprocess
import sys

import google.protobuf
import tensorflow as tf


def test_protobuf_is_6x():
    # Beam 2.77 and TensorFlow 2.21 only agree on protobuf 6.x.
    assert google.protobuf.__version__.startswith("6.")


def test_two_logical_cpus_for_distribution_tests():
    assert len(tf.config.list_logical_devices("CPU")) == 2


def test_pyav_can_encode_h264_and_mpeg4():
    import av

    assert "libx264" in av.codecs_available or "h264" in av.codecs_available
    assert "mpeg4" in av.codecs_available


def test_beam_tfrecord_sink_has_a_crc32c():
    import google_crc32c

    assert google_crc32c.value(b"123456789") == 0xE3069283


def _without_the_setting():
    return {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}


def test_importing_the_package_turns_on_onednn():
    """A fresh process whose environment does not name the variable: TensorFlow imported after
    the package runs oneDNN's kernels."""
    code = (
        "import stfusion_tf, tensorflow\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_without_the_setting(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_importing_the_package_leaves_an_explicit_setting_alone():
    """``TF_ENABLE_ONEDNN_OPTS=0`` is still 0 after the import, for TensorFlow to read when it is
    imported (and then run Eigen's kernels). The package does not import TensorFlow, so the fresh
    process checks the variable without TensorFlow's 5 CPU-seconds of start-up."""
    code = "import os, stfusion_tf\nprint(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**_without_the_setting(), "TF_ENABLE_ONEDNN_OPTS": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "0"
