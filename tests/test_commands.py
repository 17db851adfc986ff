"""tests/commands.py, the in-process runner of the command lines, leaves absl's flags as it found
them, whichever module defined the flags a command added (the study's ``cli()`` defines every
training flag from ``stfusion_tf.train_command``)."""

from absl import flags

from tests import commands


def test_commands_run_one_after_another_in_one_process(tmp_path, capfd):
    before = set(flags.FLAGS)
    study = commands.run(capfd, "stfusion_tf.study", f"--records_dirs={tmp_path / 'nowhere'}")
    assert study.returncode == 2 and "no such folder" in study.stderr, study.stderr
    assert set(flags.FLAGS) == before
    train = commands.run(capfd, "stfusion_tf.train", f"--records_dir={tmp_path}")
    assert train.returncode == 2, train.stderr
    assert "--workspace is required" in train.stderr and "Traceback" not in train.stderr
    assert set(flags.FLAGS) == before
