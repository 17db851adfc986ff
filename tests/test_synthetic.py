"""pipelines.synthetic: seeded real videos whose classes differ only as each task says."""

import os

import numpy as np
import pytest

from pipelines import synthetic
from tests import video_fixtures
from tfrecords_tools import video_io


def object_mask(frame):
    """The object's pixels: >= 140 in every channel, over a background < 120 in every channel
    (a threshold between the two also works after lossy coding)."""
    return frame.astype(int).mean(axis=-1) >= 130


def object_position(frame):
    """(y, x) of the object, as circular means, so an object split across an edge (it moves on
    a torus) is one object; in [0, height) x [0, width)."""
    ys, xs = np.nonzero(object_mask(frame))
    position = []
    for coords, period in ((ys, frame.shape[0]), (xs, frame.shape[1])):
        angle = np.angle(np.exp(2j * np.pi * coords / period).mean())
        position.append((angle / (2 * np.pi) * period) % period)
    return np.array(position)


def displacement(frames):
    """Total (dy, dx) the object travels, summing frame-to-frame steps taken the short way round."""
    positions = np.array([object_position(f) for f in frames])
    period = np.array(frames[0].shape[:2])
    steps = np.diff(positions, axis=0)
    steps = (steps + period / 2) % period - period / 2
    return steps.sum(axis=0)


def render(task, class_name, seed, **spec_overrides):
    spec = synthetic.SyntheticSpec(
        task=task, **{**dict(frames=12, height=32, width=40), **spec_overrides}
    )
    return synthetic.render_video(spec, class_name, np.random.default_rng(seed))


def decode_dataset(root):
    videos = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            frames = video_io.decode_video(path, video_io.DecodeOptions(short_side=0)).frames
            videos[os.path.relpath(path, root)] = np.stack(frames)
    return videos


def test_same_seed_same_decoded_frames_different_seed_different(tmp_path):
    spec = video_fixtures.tiny_spec(videos_per_class=1, frames=8)
    counts = synthetic.write_dataset(str(tmp_path / "a"), spec)
    synthetic.write_dataset(str(tmp_path / "b"), spec)
    synthetic.write_dataset(
        str(tmp_path / "c"), video_fixtures.tiny_spec(videos_per_class=1, frames=8, seed=1)
    )
    assert counts == {name: 1 for name in synthetic.class_names("motion")}
    a, b, c = (decode_dataset(str(tmp_path / d)) for d in "abc")
    assert sorted(a) == sorted(f"{n}/{n}_0000.mp4" for n in counts)
    assert sorted(a) == sorted(b) == sorted(c)
    for name in a:
        assert a[name].shape == (8, 32, 40, 3)
        np.testing.assert_array_equal(a[name], b[name])
        assert np.abs(a[name].astype(int) - c[name].astype(int)).mean() > 5


def test_class_names_per_task():
    assert synthetic.class_names("motion") == ["move_left", "move_right", "move_up", "move_down"]
    assert synthetic.class_names("appearance") == ["square", "disc", "cross", "ring"]
    assert synthetic.class_names("mixed") == [
        "square_left",
        "square_right",
        "disc_left",
        "disc_right",
    ]


@pytest.mark.parametrize("class_name", synthetic.class_names("motion"))
def test_motion_moves_the_object_in_the_class_direction(class_name):
    dy_class, dx_class = synthetic.DIRECTIONS[class_name.removeprefix("move_")]
    for seed in range(20):
        frames = render("motion", class_name, seed)
        dy, dx = displacement(frames)
        along = dy * dy_class + dx * dx_class
        across = dx * dy_class + dy * dx_class
        assert along > 8, (seed, dy, dx)  # At least 0.6 * 0.8 of the free range of 32 - 8 px.
        assert abs(across) < 1, (seed, dy, dx)


def test_motion_single_frame_carries_no_class_information():
    """Where the object is in any one frame (first, middle, last) is distributed alike for every
    class (only the motion tells the classes apart), so a network must fuse time to do better
    than chance."""
    n, frame_indices = 200, (0, 5, 11)
    by_class = {}
    for name in synthetic.class_names("motion"):
        videos = [render("motion", name, s) for s in range(n)]
        by_class[name] = np.array([[object_position(v[i]) for i in frame_indices] for v in videos])
    pooled = np.concatenate(list(by_class.values()))  # [videos, frame, (y, x)]
    spread = pooled.std(axis=0)
    for name, positions in by_class.items():
        # Means within 4 standard errors of the pooled mean; spreads within 20%.
        np.testing.assert_array_less(
            np.abs(positions.mean(axis=0) - pooled.mean(axis=0)), 4 * spread / np.sqrt(n), name
        )
        np.testing.assert_allclose(positions.std(axis=0), spread, rtol=0.2, err_msg=name)


def test_motion_shape_and_colour_do_not_depend_on_the_class():
    areas = {
        name: sorted(object_mask(render("motion", name, s)[0]).sum() for s in range(40))
        for name in synthetic.class_names("motion")
    }
    medians = [np.median(a) for a in areas.values()]
    assert max(medians) - min(medians) <= 0.25 * np.mean(medians)


def test_appearance_shapes_differ_by_class():
    """Each appearance class draws its own shape: the object's pixel count (area) tells them
    apart exactly, at any position and in any direction."""
    spec = dict(frames=4, height=64, width=80)  # Object 16x16 px.
    size = 16
    expected_area = {
        "square": size * size,
        "disc": int(synthetic._shape_mask("disc", size).sum()),
        "cross": int(synthetic._shape_mask("cross", size).sum()),
        "ring": int(synthetic._shape_mask("ring", size).sum()),
    }
    assert len(set(expected_area.values())) == 4
    for name in synthetic.class_names("appearance"):
        for seed in range(5):
            frames = render("appearance", name, seed, **spec)
            assert {int(object_mask(f).sum()) for f in frames} == {expected_area[name]}, name


def test_appearance_direction_is_random():
    directions = set()
    for seed in range(30):
        dy, dx = displacement(render("appearance", "disc", seed))
        directions.add((int(np.sign(np.round(dy))), int(np.sign(np.round(dx)))))
    assert directions == {(0, -1), (0, 1), (-1, 0), (1, 0)}


def test_mixed_class_is_shape_and_direction():
    frames = render("mixed", "disc_right", 0, height=64, width=80)
    dy, dx = displacement(frames)
    assert dx > 8 and abs(dy) < 1
    assert object_mask(frames[0]).sum() == synthetic._shape_mask("disc", 16).sum()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(task="colour"), r"task must be one of .* Received: task='colour'"),
        (dict(height=31), r"even and >= 16 .* Received: height=31, width=80"),
        (dict(width=14), r"Received: height=64, width=14"),
        (dict(frames=1), r"Received: frames=1, videos_per_class=12"),
    ],
)
def test_spec_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        synthetic.SyntheticSpec(**overrides)
