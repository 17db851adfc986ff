"""The packages' imports run one way, and no package's modules import each other in a circle.

Layers (``STYLE.md``, "Layers run one way"): ``tfrecords_tools`` (record format, I/O, video
reading, fingerprints) at the bottom; ``pipelines`` (the Beam job) and ``stfusion_tf`` (models,
training, serving) above it, side by side: each may import the bottom package, neither the
other. ``pipelines`` is the only package that imports Beam. Inside a package, a cycle of imports
(``a`` imports ``b`` imports ``a``, at any depth) means two modules share something that belongs
in a third, lower one.

Every import counts, at module level or inside a function: an import moved into a function to
dodge a cycle is still the dependency (it only fails later, at run time). The rules are read from
the source with ``ast``; nothing is imported. ``tests/`` and ``bench/`` are drivers of all three
packages and not checked. ``pipelines.demo`` and ``stfusion_tf.study`` run the other package's
commands as subprocesses (``python -m ...``), which is not an import: no allowance is needed.

Each violation is reported as ``path:line: module imports module`` so it can be fixed from the
message; the last tests run the checker on small trees written here, to show it finds each kind.
"""

from __future__ import annotations

import ast
import collections
import os
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Package -> layer: a package may import its own modules and those of LOWER layers only.
LAYERS = {"tfrecords_tools": 0, "pipelines": 1, "stfusion_tf": 1}
BEAM_PACKAGES = {"pipelines"}  # the packages that may import apache_beam


Import = collections.namedtuple("Import", "module target path line")


def find_modules(root: str) -> dict[str, str]:
    """Dotted module name -> file, for every ``.py`` of the packages in ``LAYERS``."""
    modules = {}
    for package in LAYERS:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def _base_package(module: str, path: str, level: int) -> str:
    parts = module.split(".")
    if not path.endswith("__init__.py"):
        parts = parts[:-1]  # a module's package
    return ".".join(parts[: len(parts) - (level - 1)])


def _target(name: str, modules) -> str:
    """The deepest module of the project that ``name`` names, else ``name`` itself (external)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return name


def find_imports(module: str, path: str, modules) -> list[Import]:
    """Every import of ``module`` (module level and in functions), each with its line; a
    ``from a import b`` names ``a.b`` when that is a module, else ``a``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _base_package(module, path, node.level)
                base = f"{package}.{base}" if base else package
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for name in dict.fromkeys(names):
            found.append(Import(module, _target(name, modules), path, node.lineno))
    return sorted(found, key=lambda i: i.line)


def _where(imp: Import, root: str) -> str:
    return f"{os.path.relpath(imp.path, root)}:{imp.line}: {imp.module} imports {imp.target}"


def layer_violations(root: str) -> list[str]:
    """Imports of another package of the same or a higher layer, and Beam outside
    ``BEAM_PACKAGES``."""
    modules = find_modules(root)
    out = []
    for module, path in modules.items():
        package = module.split(".")[0]
        for imp in find_imports(module, path, modules):
            other = imp.target.split(".")[0]
            if other in LAYERS and other != package and LAYERS[other] >= LAYERS[package]:
                kind = "upward" if LAYERS[other] > LAYERS[package] else "sideways"
                out.append(
                    f"{_where(imp, root)} ({kind}: layer {LAYERS[other]} from {package}, "
                    f"layer {LAYERS[package]})"
                )
            if other == "apache_beam" and package not in BEAM_PACKAGES:
                out.append(f"{_where(imp, root)} (only {sorted(BEAM_PACKAGES)} may import Beam)")
    return out


def _graph(root: str):
    """Module -> {imported module of the same package: first import}, without a module's
    imports of its own parent packages (``stfusion_tf.models.template`` importing
    ``stfusion_tf.models`` is running its package's ``__init__``, not a cycle)."""
    modules = find_modules(root)
    graph = {m: {} for m in modules}
    for module, path in modules.items():
        for imp in find_imports(module, path, modules):
            same_package = imp.target.split(".")[0] == module.split(".")[0]
            if (
                imp.target in modules
                and same_package
                and imp.target != module
                and not module.startswith(imp.target + ".")
            ):
                graph[module].setdefault(imp.target, imp)
    return graph


def _strongly_connected(graph) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _shortest_cycle(graph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth first, inside it)."""
    start, members = component[0], set(component)
    parents, queue = {start: None}, collections.deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start]  # path: v back to start
            if w in members and w not in parents:
                parents[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {component}")


def import_cycles(root: str) -> list[str]:
    """Each import cycle inside a package, as its modules with the line of each import."""
    graph = _graph(root)
    out = []
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, component)
        steps = [_where(graph[a][b], root) for a, b in zip(cycle, cycle[1:], strict=False)]
        out.append(f"import cycle among {component}:\n    " + "\n    ".join(steps))
    return out


# --- The project --------------------------------------------------------------------------------


def test_the_packages_are_found():
    modules = find_modules(REPO)
    assert {"tfrecords_tools.files", "pipelines.convert", "stfusion_tf.scoring"} <= set(modules)


def test_no_package_imports_a_package_beside_or_above_it():
    violations = layer_violations(REPO)
    assert not violations, "Imports against the layers:\n" + "\n".join(violations)


def test_no_import_cycle_inside_a_package():
    cycles = import_cycles(REPO)
    assert not cycles, "\n".join(cycles)


# --- The checker, on trees written here ---------------------------------------------------------


def _write_tree(root, files: dict[str, str]) -> str:
    for name in ("tfrecords_tools", "pipelines", "stfusion_tf"):
        (root / name).mkdir(exist_ok=True)
        (root / name / "__init__.py").touch()
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return str(root)


def test_an_upward_a_sideways_and_a_beam_import_are_reported_with_their_lines(tmp_path):
    root = _write_tree(
        tmp_path,
        {
            "tfrecords_tools/sheet.py": """\
                import os

                def read():
                    from pipelines import video  # in a function: still an import
                """,
            "pipelines/video.py": "from tfrecords_tools import sheet  # down: fine\n",
            "stfusion_tf/predict.py": "import numpy\nfrom pipelines.video import read\n",
            "stfusion_tf/io.py": "from apache_beam.io.filesystems import FileSystems\n",
            "pipelines/job.py": "import apache_beam as beam  # the Beam package: fine\n",
        },
    )
    assert sorted(layer_violations(root)) == [
        "stfusion_tf/io.py:1: stfusion_tf.io imports apache_beam.io.filesystems "
        "(only ['pipelines'] may import Beam)",
        "stfusion_tf/predict.py:2: stfusion_tf.predict imports pipelines.video "
        "(sideways: layer 1 from stfusion_tf, layer 1)",
        "tfrecords_tools/sheet.py:4: tfrecords_tools.sheet imports pipelines.video "
        "(upward: layer 1 from tfrecords_tools, layer 0)",
    ]


def test_a_cycle_through_a_function_level_import_is_reported_with_each_line(tmp_path):
    root = _write_tree(
        tmp_path,
        {
            "stfusion_tf/plots.py": """\
                import math

                def draw():
                    from stfusion_tf import scoring  # lazily, to dodge the cycle
                """,
            "stfusion_tf/scoring.py": "from stfusion_tf.plots import draw\n",
            "stfusion_tf/export.py": "from stfusion_tf import serving as api\n",
            "stfusion_tf/serving.py": "from . import predict\n",
            "stfusion_tf/predict.py": "import numpy\nfrom stfusion_tf.export import load\n",
            "stfusion_tf/models/__init__.py": "from stfusion_tf.models import template\n",
            "stfusion_tf/models/template.py": "from stfusion_tf.models import layers\n",
            "stfusion_tf/models/layers.py": "from stfusion_tf import models  # its package\n",
        },
    )
    assert import_cycles(root) == [
        "import cycle among ['stfusion_tf.export', 'stfusion_tf.predict', 'stfusion_tf.serving']:"
        "\n    stfusion_tf/export.py:1: stfusion_tf.export imports stfusion_tf.serving"
        "\n    stfusion_tf/serving.py:1: stfusion_tf.serving imports stfusion_tf.predict"
        "\n    stfusion_tf/predict.py:2: stfusion_tf.predict imports stfusion_tf.export",
        "import cycle among ['stfusion_tf.plots', 'stfusion_tf.scoring']:"
        "\n    stfusion_tf/plots.py:4: stfusion_tf.plots imports stfusion_tf.scoring"
        "\n    stfusion_tf/scoring.py:1: stfusion_tf.scoring imports stfusion_tf.plots",
    ]


@pytest.mark.parametrize(
    "module, path, level, expected",
    [
        ("stfusion_tf.models.template", "stfusion_tf/models/template.py", 1, "stfusion_tf.models"),
        ("stfusion_tf.models.template", "stfusion_tf/models/template.py", 2, "stfusion_tf"),
        ("stfusion_tf.models", "stfusion_tf/models/__init__.py", 1, "stfusion_tf.models"),
    ],
)
def test_relative_imports_resolve_like_python(module, path, level, expected):
    assert _base_package(module, path, level) == expected
