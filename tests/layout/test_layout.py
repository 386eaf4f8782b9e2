"""The package layout: no import cycles in the product code, and the layers keep their order.

Read with ``ast`` (``tests/support/import_graph.py``), so nothing here depends on what was imported
before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.import_graph import cycles, external_imports, import_graph

PRODUCT = ("depcache", "depcache_celery")


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_finds_a_cycle_and_ignores_what_never_runs_at_import(tmp_path: Path) -> None:
    """The checker itself: a synthetic package with one real cycle, and imports that do not
    form one at run time (TYPE_CHECKING, function bodies) or are not ours."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import A\n",
            "pkg/a.py": "from .b import B\nA = 1\n",
            "pkg/b.py": "from . import c\nB = 2\n",
            "pkg/c.py": "from pkg.a import A\n",  # a -> b -> c -> a
            "pkg/d.py": (
                "from typing import TYPE_CHECKING\nimport os\n"
                "if TYPE_CHECKING:\n    from .e import E\n"
                "def later():\n    from .e import E\n"
            ),
            "pkg/e.py": "from .d import later\nE = 3\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/f.py": "from ..d import later\nfrom . import g\n",
            "pkg/sub/g.py": "try:\n    from .f import x\nexcept ImportError:\n    pass\n",
        },
    )
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.b"] == {"pkg.c"}  # `from . import c` is the module, not the package
    assert graph["pkg.d"] == set()  # TYPE_CHECKING and function-level imports do not run
    assert graph["pkg.sub.f"] == {"pkg.d", "pkg.sub.g"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.sub.f", "pkg.sub.g"]]
    everything = import_graph(tmp_path, ["pkg"], everything=True)
    assert ["pkg.d", "pkg.e"] in cycles(everything)
    assert cycles({"x": {"x"}}) == [["x"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycles_in_the_product_code() -> None:
    assert cycles(import_graph()) == []


def test_the_cycles_issue_17_named_are_gone_even_for_a_reader() -> None:
    """Counting TYPE_CHECKING and function-level imports too (what a reader follows): the
    call path's modules no longer import each other both ways (``CallSpec`` is in
    ``call/_spec.py``), the errors do not reach up to the registry, and the L1 does not know
    the manager or the backends' types (it subscribes through ``backend.subscribe()``)."""
    graph = import_graph(everything=True)
    call = {"depcache.call._decorator", "depcache.call._drivers", "depcache.call._flow"}
    for component in cycles(graph):
        assert len(call & set(component)) <= 1, component
    assert not {m for m in graph["depcache.errors"] if m != "depcache._report"}
    listener = graph["depcache.l1._listener"]
    assert "depcache.manager" not in listener
    assert not {m for m in listener if m.startswith("depcache.backends.")} - {
        "depcache.backends.base"
    }
    assert "depcache.config" not in listener


@pytest.mark.parametrize("forbidden", ["celery", "kombu", "depcache_celery"])
def test_depcache_never_imports_celery(forbidden: str) -> None:
    offenders = [
        module
        for module, imported in external_imports().items()
        if module.split(".")[0] == "depcache" and forbidden in imported
    ]
    assert offenders == []


def test_external_imports_sees_function_level_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "depcache/__init__.py": "def f():\n    import kombu\n",
            "depcache/x.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import celery\n"
            ),
        },
    )
    found = external_imports(tmp_path, ["depcache"])
    assert found["depcache"] == {"kombu"}
    assert found["depcache.x"] == {"typing"}


def test_the_design_doc_names_every_module_of_the_layers() -> None:
    """docs/design.md "Layers" is a newcomer's map: it names each module of call/ and l1/ and
    each top-level module and folder of depcache/."""
    root = Path(__file__).resolve().parents[2]
    design = (root / "docs" / "design.md").read_text()
    layers = design.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    package = root / "depcache"
    names = [p.name for p in (package / "call").glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in (package / "l1").glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "_json.py")]
    names += [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()]
    missing = [name for name in sorted(names) if name not in layers]
    assert missing == []
