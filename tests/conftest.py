"""Shared pytest set-up.

TensorFlow's logical devices can only be configured before the runtime starts, so the split of the
one physical CPU into two logical devices (for real `tf.distribute.MirroredStrategy` tests) happens
here, once, at import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
if _cpus and len(tf.config.get_logical_device_configuration(_cpus[0]) or []) < 2:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
