"""The pinned stack imports together and agrees on what the project relies on."""

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
