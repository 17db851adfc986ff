"""stfusion_tf.plots: the marginal-probability chart is a real PNG, sized for its layers; the
Pareto chart is a real PNG for a tiny template and for DenseNet-121's long strategy strings."""

import os

import numpy as np
import pytest
from PIL import Image

from stfusion_tf import plots, ranking
from stfusion_tf.models import TemplateConfig, fusion_block_sizes, fusion_layer_names
from stfusion_tf.strategy import (
    ALL_THE_WAY_UNITS,
    FusionStrategy,
    marginal_probabilities,
    sample_strategies,
)


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


def _scores(sizes, num_sampled, macs_per_branch, seed=0):
    """Sampled strategies and the S, ST, S+ST baselines, with MACs growing with the branches on
    (as a pruned network's do) and a top-1 that does not follow them exactly."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.6, (sum(sizes), 2))
    strategies = sample_strategies(p, sizes, num_sampled, seed=seed, unique=True)

    def score(strategy, kind):
        on = int(strategy.branch_mask().sum())
        return ranking.StrategyScore(
            strategy=strategy,
            kind=kind,
            top1=float(rng.integers(0, 25)) / 24,
            top5=1.0,
            loss=1.0,
            metrics={},
            protocol="clips=1x1crop",
            num_videos=24,
            macs=int((10 + on) * macs_per_branch),
            params=1000,
            log_probability=-1.0,
        )

    rows = ranking.sort_scores(score(s, "sampled") for s in strategies)
    baselines = [
        score(FusionStrategy.all_the_way(u, sizes), "all_the_way") for u in ALL_THE_WAY_UNITS
    ]
    return rows, baselines


@pytest.mark.parametrize(
    "blocks, macs_per_branch", [((2, 2), 50_000), ((6, 12, 24, 16), 300_000_000)]
)
def test_pareto_chart_is_a_png_of_the_expected_size(tmp_path, blocks, macs_per_branch):
    sizes = fusion_block_sizes(TemplateConfig(num_classes=5, blocks=blocks))
    rows, baselines = _scores(sizes, 20, macs_per_branch)
    path = str(tmp_path / "pareto.png")
    assert plots.plot_pareto([*rows, *baselines], path, best=rows[0]) == path
    assert os.listdir(tmp_path) == ["pareto.png"]  # written atomically, no temp file
    assert 10_000 < os.path.getsize(path) < 2_000_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (int(8.0 * 120), int(4.8 * 120))


def test_pareto_chart_draws_the_best_strategy_and_the_baselines(tmp_path):
    rows, baselines = _scores((3, 2), 8, 50_000, seed=1)
    charts = {
        "sampled": ([*rows], None),
        "baselines": ([*rows, *baselines], None),
        "best": ([*rows, *baselines], rows[0]),
    }
    pngs = {}
    for name, (chart_rows, best) in charts.items():
        path = str(tmp_path / f"{name}.png")
        plots.plot_pareto(chart_rows, path, best=best, title="Pareto")
        pngs[name] = open(path, "rb").read()
    assert len(set(pngs.values())) == 3


def test_pareto_chart_needs_rows(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_pareto([], str(tmp_path / "pareto.png"))
    assert os.listdir(tmp_path) == []


def test_macs_are_shown_in_gmacs_from_one_billion():
    assert plots._macs_scale(999_999_999) == (1e6, "MMACs")
    assert plots._macs_scale(1_000_000_000) == (1e9, "GMACs")


def test_a_wrapped_strategy_string_is_the_string_over_short_lines():
    sizes = (7, 13, 25, 16)  # DenseNet-121's fusion blocks
    text = str(FusionStrategy.all_the_way("S+ST", sizes))
    wrapped = plots._wrap_strategy(text, width=40)
    lines = wrapped.split("\n")
    assert "".join(lines) == text
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert all(line[-1] in ",|" for line in lines[:-1])  # broken between unit codes only
    assert plots._wrap_strategy("st,t|s,-") == "st,t|s,-"
