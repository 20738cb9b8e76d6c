"""Refuse to start local worker processes from an unguarded script, before any worker starts.

Local workers are *spawned* (engine/scheduler.py: forking after torch started threads is unsafe), and a spawned
process first imports the script that started it, as ``__mp_main__``. A script that calls ``w2strust.run(...,
workers=2)`` at its top level, not under ``if __name__ == "__main__":``, would therefore run that call again in every
worker: the worker dies trying to start processes of its own, the pool breaks, and the run ends with "worker died
(killed, or out of memory)" after retries that each re-run the script's earlier calls. Python's rule is the guard
(https://docs.python.org/3/library/multiprocessing.html, "Safe importing of main module"); this finds the call site in
the script and says so instead.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from ..errors import W2SError


def _is_main_test(node: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either side), alone or as one term of an ``and``."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return any(_is_main_test(v) for v in node.values)
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
        return False
    sides = [node.left, node.comparators[0]]
    return (any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
            and any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides))


def guarded_lines(source: str) -> set[int]:
    """Line numbers of the script that lie inside an ``if __name__ == "__main__":`` block."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and _is_main_test(node.test):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return lines


def unguarded_call_site() -> tuple[str, int] | None:
    """(script, line) of the top-level statement of ``__main__`` that led here when it is not under the guard;
    None when it is, or when that cannot be told (a notebook or ``python -c``: nothing to re-import; no readable
    source; no module-level frame of the script on the stack)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not str(path).endswith(".py"):
        return None
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        return None  # `python -m package`: multiprocessing does not re-import it (spawn._fixup_main_from_name)
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)):
        frame = frame.f_back
    if frame is None:
        return None
    try:
        guarded = guarded_lines(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    return None if frame.f_lineno in guarded else (str(path), frame.f_lineno)


def require_main_guard(workers: int) -> None:
    site = unguarded_call_site()
    if site is not None:
        raise W2SError(f"{site[0]}, line {site[1]}: workers={workers} starts processes that import this script "
                       f"first, and this call is not under `if __name__ == \"__main__\":`, so every worker would run "
                       f"it again; put the script's calls under that guard (or use workers=1)")
