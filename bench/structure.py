#!/usr/bin/env python3
"""Prints the figures of hgs's structure: lines per module, the longest functions, the flows'
hold on xe, and the `dry_run` conditionals outside the wiring.

    python bench/structure.py [SRC]        # SRC: a src/hgs folder (default: this checkout's)

Run it on an older checkout (e.g. `git worktree add /tmp/old REV`) to compare before and after.
"""

import ast
import re
import sys
from pathlib import Path


def functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def main(argv):
    src = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "src" / "hgs"
    modules, funcs = [], []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if "sim" in rel.parts:  # the simulated site is a test bed, not hgs
            continue
        text = path.read_text()
        modules.append((len(text.splitlines()), str(rel)))
        for name, line, length in functions(ast.parse(text)):
            funcs.append((length, f"{rel}:{line} {name}"))
    modules.sort(reverse=True)
    funcs.sort(reverse=True)
    total = sum(n for n, _ in modules)
    top = [p for p in sorted({Path(m).parts[0] for _, m in modules})]
    print(f"src/hgs (without sim/): {len(modules)} modules, {total} lines; top level: {', '.join(top)}")
    print("largest modules:")
    for n, m in modules[:8]:
        print(f"  {n:5d}  {m}")
    print("longest functions:")
    for n, f in funcs[:8]:
        print(f"  {n:5d}  {f}")
    over = sum(1 for n, _ in funcs if n > 60)
    print(f"functions over 60 lines: {over} of {len(funcs)}")
    flows = [p for p in (src / "flows").glob("*.py")]
    xe_refs = sum(len(re.findall(r"\bxe\.|XeCallError|\.error\.code|\bargv\b", p.read_text())) for p in flows)
    print(f"xe references in flows/ (xe., XeCallError, .error.code, argv): {xe_refs}")
    commands = list((src / "commands").glob("*.py"))
    dry = sum(len(re.findall(r"\bdry_run\b", p.read_text())) for p in commands)
    print(f"dry_run in commands/: {dry}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
