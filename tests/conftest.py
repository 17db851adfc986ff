"""Shared pytest set-up.

TensorFlow's logical devices can only be configured before the runtime starts, so the split of the
one physical CPU into two logical devices (for real `tf.distribute.MirroredStrategy` tests) happens
here, once, at import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as stfusion_tf/__init__.py does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
if _cpus and len(tf.config.get_logical_device_configuration(_cpus[0]) or []) < 2:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )


import itertools  # noqa: E402

import pytest  # noqa: E402

_KEY_BASES = itertools.count(1000, 1000)


@pytest.fixture(autouse=True)
def _separate_collective_keys():
    """Every strategy of a process numbers its collectives from the same group and instance keys,
    and TensorFlow's runtime remembers the shapes it saw under a key: two MirroredStrategy tests
    with different models then fail with "Shape mismatch in the collective instance". TensorFlow's
    own tests give each strategy its own key range through this class attribute; so do we."""
    tf.distribute.MirroredStrategy._collective_key_base = next(_KEY_BASES)
    yield
