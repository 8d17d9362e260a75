"""The layering of STYLE.md §3.2, checked on the source with `ast` so it cannot rot.

A module may import only from its own package or from layers below its own; siblings on one layer do not
import each other; config/store/index/eval never import torch or transformers (not even lazily), so the
search back end and the evaluation stay light.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "hrem"

LAYERS = [
    {"config", "utils"},
    {"store"},
    {"encoders", "relation", "losses", "data", "index", "vision"},
    {"model", "grounding", "eval", "detection"},
    {"factory"},
    {"checkpoint"},
    {"pipeline", "train", "serve"},
    {"jobs"},       # library job functions: wire pipeline (evaluators) and train (trainers) together
    {"cli"},
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}
TORCH_FREE = {"config", "store", "index", "eval"}


def _top_package(module_path: pathlib.Path) -> str:
    rel = module_path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _modules():
    return sorted(p for p in ROOT.rglob("*.py") if len(p.relative_to(ROOT).parts) > 0)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_layers(path):
    package = _top_package(path)
    if package not in LAYER_OF:  # hrem/__init__.py, __main__.py
        return
    tree = ast.parse(path.read_text())
    for lineno, name in _imports(tree):
        parts = name.split(".")
        if package in TORCH_FREE and parts[0] in ("torch", "transformers"):
            pytest.fail(f"{path}:{lineno} imports {name}; {package} must stay torch-free")
        if parts[0] != "hrem" or len(parts) < 2 or parts[1] == package or parts[1] == "__init__":
            continue
        target = parts[1]
        if target not in LAYER_OF:
            continue
        if LAYER_OF[target] >= LAYER_OF[package]:
            pytest.fail(f"{path}:{lineno} imports {name}: layer '{target}' is not below '{package}'")


def test_every_package_is_placed_in_a_layer():
    packages = {p.name.removesuffix(".py") for p in ROOT.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))}
    assert packages <= set(LAYER_OF), f"place these in LAYERS: {sorted(packages - set(LAYER_OF))}"
