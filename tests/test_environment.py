"""The pinned stack imports together and agrees on what the project relies on."""

import os
import subprocess
import sys

import google.protobuf
import pytest
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


@pytest.mark.parametrize("setting, enabled", [(None, True), ("0", False)])
def test_importing_the_package_turns_on_onednn_unless_told_not_to(setting, enabled):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = (
        "import stfusion_tf, tensorflow\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == str(enabled)
