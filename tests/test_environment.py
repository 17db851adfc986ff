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


def _fresh_process(code: str, setting: str | None) -> str:
    """What ``code`` prints in a fresh interpreter whose environment sets
    ``TF_ENABLE_ONEDNN_OPTS`` to ``setting`` (None: not at all)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("setting, after", [(None, "1"), ("0", "0"), ("1", "1")])
def test_importing_the_package_turns_on_onednn_unless_told_not_to(setting, after):
    # The package does not import TensorFlow: these processes start in a fraction of a second.
    code = "import os, sys, stfusion_tf\nassert 'tensorflow' not in sys.modules\n"
    code += "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    assert _fresh_process(code, setting) == after


def test_tensorflow_reads_the_setting_when_it_is_imported():
    """Why the package sets the variable before anything imports TensorFlow: TensorFlow reads it
    once, at import. Checked with ``0`` (kernels off), since on CPUs with AVX-512 VNNI
    TensorFlow turns them on by itself and ``1`` would prove nothing there."""
    code = (
        "import stfusion_tf, tensorflow\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    assert _fresh_process(code, "0") == "False"
