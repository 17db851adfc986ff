"""Shared pytest set-up.

TensorFlow's logical devices can only be configured before the runtime starts, so the split of the
one physical CPU into two logical devices (for real `tf.distribute.MirroredStrategy` tests) happens
here, once, when pytest is configured, before any test module is imported.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as stfusion_tf/__init__.py does
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One thread per op and between ops, here and in the commands the tests start: three test
# processes share two cores, the tests' networks are too small for threads to pay, and idle pool
# threads spin (six model-heavy files, three interleaved pairs of runs: 2-5% less CPU and wall).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from tfrecords_tools.command_line import import_quietly, stderr_silenced  # noqa: E402


def pytest_configure(config):
    """TensorFlow, two logical CPUs, in every process that runs tests: not in pytest-xdist's
    controller, which only hands out files (importing TensorFlow there would hold up the start of
    every worker by its ~5 s)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    # TensorFlow's start-up lines (oneDNN, CUDA stubs, cuInit) are written from C++ before its
    # log level applies, and pytest-xdist prints them after the summary: silenced as the
    # commands do.
    import_quietly("tensorflow")
    import tensorflow as tf

    with stderr_silenced():
        cpus = tf.config.list_physical_devices("CPU")
    if cpus and len(tf.config.get_logical_device_configuration(cpus[0]) or []) < 2:
        tf.config.set_logical_device_configuration(
            cpus[0],
            [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
        )


import collections  # noqa: E402
import itertools  # noqa: E402

import pytest  # noqa: E402

_KEY_BASES = itertools.count(1000, 1000)


@pytest.fixture(autouse=True)
def _separate_collective_keys():
    """Every strategy of a process numbers its collectives from the same group and instance keys,
    and TensorFlow's runtime remembers the shapes it saw under a key: two MirroredStrategy tests
    with different models then fail with "Shape mismatch in the collective instance". TensorFlow's
    own tests give each strategy its own key range through this class attribute; so do we."""
    import tensorflow as tf

    tf.distribute.MirroredStrategy._collective_key_base = next(_KEY_BASES)
    yield


# The files of end-to-end runs that take minutes each (measured with --durations=0: 105-156 s
# apiece under make test, where the next longest file takes under 45 s).
LONGEST_FILES = ("test_study.py", "test_train_cli.py", "test_multi_worker.py")


def pytest_collection_modifyitems(session, config, items):
    """The longest files first, one per xdist process, then the files with the most ``slow``
    tests.

    pytest-xdist's ``--dist loadfile`` hands out whole files in collection order, so the long
    end-to-end files start first, on different workers, and the run does not end with one worker
    finishing a long file alone (measured: 6 min 1 s in alphabetical order).
    """
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))

    def order(item):
        name = item.path.name
        return (LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES),) + (
            -slow[item.path],
        )

    items.sort(key=order)  # stable: each file keeps its own order
