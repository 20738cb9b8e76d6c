"""The package's layout: imports go only downward through its layers, with no cycle (counted over every import:
module level, in functions, under TYPE_CHECKING), and the stage keys of the smoke presets are the ones pinned
before the layout changed, so that users' caches survive moves of the code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CYCLES_TOOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "import_cycles.py"

# The layers, bottom first (w2strust/__init__.py states the same order). A module may import its own package's
# modules and any module of a lower rank; two packages of the same rank never import each other.
RANKS = {"errors": 0, "io": 1, "registry": 1, "config.schema": 2, "training": 3, "models": 3, "data": 4,
         "properties": 5, "config.build": 6, "engine": 7, "report": 7, "experiment": 8, "api": 9, "cli": 10,
         "__main__": 11, "": 11}


def _layer(module: str) -> str:
    """``w2strust.engine.cache`` -> ``engine``; the config package is two layers (schema, build)."""
    parts = module.split(".")[1:]
    if not parts:
        return ""
    if parts[0] == "config":
        return "config.build" if parts[1:2] == ["build"] else "config.schema"
    return parts[0]


def _imports(path: Path, module: str) -> set[str]:
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("w2strust")}
        elif isinstance(node, ast.ImportFrom):
            mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            if mod.startswith("w2strust"):
                found |= {f"{mod}.{a.name}" for a in node.names} if mod in ("w2strust", "w2strust.config") else {mod}
    return found


def test_imports_only_go_down_the_layers():
    wrong = []
    for path in sorted((SRC / "w2strust").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        here = _layer(module)
        for target in _imports(path, module):
            there = _layer(target)
            if there in RANKS and there != here and RANKS[there] >= RANKS[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(wrong)


@pytest.mark.skipif(not CYCLES_TOOL.exists(), reason="../shared/tools/import_cycles.py is not beside the checkout")
def test_no_import_cycle_counting_every_import():
    out = subprocess.run([sys.executable, str(CYCLES_TOOL), str(SRC), "w2strust"], capture_output=True, text=True,
                         check=True).stdout
    assert " cycles 0 " in out, out


@pytest.mark.parametrize("prop", ["fairness", "ood", "adversarial", "privacy"])
def test_smoke_preset_stage_keys_are_unchanged(prop):
    """Pinned from the flat layout (commit 29431f1; adversarial re-pinned when its generator changed to versions 3,
    4, 5 and 6, which changes what the stages train on, version 5 with its split by clean text; privacy when its token
    losses moved to ``token_nll``, which changes them in the last float bits, again when eval_batch_size entered its
    keys, when its evaluation changed (key_extra "evaluation": 2, 3, 4, then 5) and when its pool dropped near-copies;
    ood when its ID pool kept each phrase once): the same config plans the same stage folders."""
    from w2strust.config.build import build_config
    from w2strust.experiment.plan import plan

    pinned = json.loads((Path(__file__).parent / "experiment" / "smoke_stage_keys.json").read_text())
    for threads in (1, 2):
        cfg = build_config(prop, "smoke", overrides={"precision": "fp32" if prop == "privacy" else "bf16"})
        assert sorted(s.dirname for s in plan(cfg, threads)[0]) == pinned[f"{prop}/threads={threads}"]
