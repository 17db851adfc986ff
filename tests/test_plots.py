"""stfusion_tf.plots: the marginal-probability chart is a real PNG, sized for its layers."""

import os

import numpy as np
import pytest
from PIL import Image

from stfusion_tf import plots
from stfusion_tf.models import TemplateConfig, fusion_block_sizes, fusion_layer_names
from stfusion_tf.strategy import marginal_probabilities, sample_strategies


def _table(blocks, seed=0):
    config = TemplateConfig(num_classes=5, blocks=blocks)
    sizes = fusion_block_sizes(config)
    p = np.random.default_rng(seed).uniform(0.05, 0.95, (sum(sizes), 2))
    table = marginal_probabilities(p, sizes)
    for layer, name in zip(table["layers"], fusion_layer_names(config), strict=True):
        layer["name"] = name
    return table, sample_strategies(p, sizes, 1, seed=seed)[0]


@pytest.mark.parametrize("blocks", [(2, 2), (6, 12, 24, 16)])
def test_plot_writes_a_png_that_grows_with_the_layers(tmp_path, blocks):
    table, best = _table(blocks)
    path = str(tmp_path / "marginals.png")
    assert plots.plot_marginals(table, path, best_strategy=best) == path
    assert os.listdir(tmp_path) == ["marginals.png"]  # written atomically, no temp file
    assert 10_000 < os.path.getsize(path) < 2_000_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert height == int(4.2 * 120)
    # DenseNet-121's 61 fusion layers get a wider chart than the tiny template's 5.
    assert width == (int(14.7 * 120) if len(table["layers"]) == 61 else int(7.0 * 120))


def test_plot_without_best_strategy_and_with_its_string(tmp_path):
    table, best = _table((2, 2), seed=1)
    plain = str(tmp_path / "plain.png")
    marked = str(tmp_path / "marked.png")
    plots.plot_marginals(table, plain, show_none=False)
    plots.plot_marginals(table, marked, best_strategy=str(best))
    assert open(plain, "rb").read() != open(marked, "rb").read()


def test_best_strategy_must_fit_the_table(tmp_path):
    table, _ = _table((2, 2))
    with pytest.raises(ValueError, match="block sizes"):
        plots.plot_marginals(table, str(tmp_path / "x.png"), best_strategy="s,s|t")
    assert os.listdir(tmp_path) == []
