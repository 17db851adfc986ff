"""Every ``>>>`` example of the three packages runs, and shows what the code does.

The modules are found by walking the packages (``pkgutil.walk_packages``), so a new module or
subpackage is covered without a list to keep. A module is parametrized when its source holds
``>>>``; it is imported only then, so the entry points that define absl flags at import time
(``pipelines.make_tfrecords`` and ``pipelines.make_synthetic`` both define ``--output_dir`` and
``--fps``) are not imported together here. An entry point's examples belong on the library
functions it calls; if one gets examples and its flags clash, its test fails on the import and
says so.

Nothing is silently skipped: each ``>>>`` line of a module's source must be an example that
doctest finds (a ``>>>`` in a comment, or in a docstring doctest does not see, fails), and no
example may carry ``+SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import pkgutil
import re

import pytest

PACKAGES = ("tfrecords_tools", "pipelines", "stfusion_tf")
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
_PROMPT = re.compile(r"^\s*>>>", re.MULTILINE)


def _raise(name: str) -> None:
    """walk_packages' onerror: a subpackage that fails to import fails the test (the default
    skips it silently)."""
    raise ImportError(f"could not import the package {name}")


def _module_names() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.walk_packages(
            package.__path__, prefix=package_name + ".", onerror=_raise
        ):
            names.append(info.name)
    return sorted(names)


def _source(name: str) -> str:
    origin = importlib.util.find_spec(name).origin
    with open(origin, encoding="utf-8") as f:
        return f.read()


MODULES = _module_names()
WITH_EXAMPLES = [name for name in MODULES if _PROMPT.search(_source(name))]


def test_discovery_finds_subpackages_and_examples():
    assert {"stfusion_tf.layers.gated_conv3d", "stfusion_tf.models.template"} <= set(MODULES)
    assert "stfusion_tf.models.backbones.network" in MODULES
    assert len(WITH_EXAMPLES) > 0


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_examples(name):
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    examples = [example for test in tests for example in test.examples]
    prompts = len(_PROMPT.findall(_source(name)))
    assert len(examples) == prompts, (
        f"{name}: {prompts} '>>>' lines in the source, {len(examples)} examples found by doctest "
        "(a '>>>' outside a docstring doctest sees?)"
    )
    skipped = [e.source.strip() for e in examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"{name}: examples marked +SKIP do not run: {skipped}"

    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = io.StringIO()
    failed = 0
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        failed += runner.run(test, out=report.write).failed
    assert failed == 0, f"{failed} of {len(examples)} examples failed:\n{report.getvalue()}"
