"""Mutation scores per module from the last ``mutmut run``, against the goals.

``make mutants`` runs mutmut, then this. It reads the results mutmut left
in ``mutants/`` and prints one row per mutated module: mutants, killed
(a failing test, a timeout or a crash all count: the suite noticed; the
timeouts and crashes are shown apart), those left alive, and the score. Then every
survivor, with the line it changed.

A survivor is either killed by a new test or listed in
``equivalent-mutants.toml`` beside this file, with the reason it cannot be
told apart from the real code. Entries are matched by function and by the
mutated text, not by mutmut's numbers, which shift when a function changes.

Exits 1 when a module is below its goal or a survivor is not listed, so
that the habit holds: run it before calling a per-message change done.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).with_name("equivalent-mutants.toml")

# The goals of issue 11: the sans-IO core is pure logic that tests reach
# directly; the asyncio modules have paths only a broken network reaches.
GOALS = {"aiosock.core.": 0.90, "aiosock.aio.": 0.80}

# What counts as the suite noticing the mutant. A forked worker sometimes
# dies by SIGSEGV or SIGABRT after a test failed (uvloop and the loop's
# threads do not survive every fork); run without forking, each of those
# mutants we checked fails a test. mutmut calls SIGABRT "suspicious".
DETECTED = {"killed", "timeout", "segfault", "crashed", "caught by type check"}
_SIGABRT = -6

_NUMBER = re.compile(r"__mutmut_\d+$")


def function_of(mutant: str) -> str:
    """``aiosock.core.codecs.xǁRawǁencode__mutmut_3`` -> without the number."""
    return _NUMBER.sub("", mutant)


def module_of(mutant: str) -> str:
    return function_of(mutant).rpartition(".")[0]


def mutated_text(mutant: str, path: Path) -> str:
    """The lines the mutant adds, stripped and joined: its stable identity."""
    diff = get_diff_for_mutant(mutant, path=path)
    added = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return " ".join(added)


def load_results() -> dict[str, tuple[str, Path]]:
    """Mutant name -> (status, mutated source file), from mutmut's meta files."""
    results: dict[str, tuple[str, Path]] = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        # mutants/aiosock/core/codecs.py.meta -> aiosock/core/codecs.py
        source = meta.relative_to(ROOT / "mutants").with_suffix("")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in codes.items():
            status = "crashed" if code == _SIGABRT else status_by_exit_code[code]
            results[mutant] = (status, source)
    return results


def load_equivalents() -> dict[tuple[str, str], str]:
    entries = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return {(e["function"], " ".join(e["mutated"].split())): e["why"] for e in entries}


def main() -> int:
    os.chdir(ROOT)  # mutmut finds its files relative to the project
    results = load_results()
    if not results:
        print("no mutmut results: run `make mutants`", file=sys.stderr)
        return 1
    equivalents = load_equivalents()
    # [detected, of which timed out, of which crashed, all]
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    unexplained: list[str] = []
    explained: list[str] = []
    unchecked = sum(status == "not checked" for status, _ in results.values())
    if unchecked:
        print(f"{unchecked} mutants were never run: the run did not finish")
    for mutant, (status, source) in sorted(results.items()):
        row = totals[module_of(mutant)]
        row[3] += 1
        if status in DETECTED:
            row[0] += 1
            row[1] += status == "timeout"
            row[2] += status in ("segfault", "crashed")
            continue
        text = mutated_text(mutant, source)
        key = (function_of(mutant), " ".join(text.split()))
        line = f"{status:>10}  {mutant}\n            + {text}"
        if key in equivalents:
            explained.append(f"{line}\n            = {equivalents[key]}")
        else:
            unexplained.append(line)
    failed = False
    print(
        f"{'module':<24} {'mutants':>7} {'killed':>6} {'(hung)':>6} "
        f"{'(crash)':>7} {'left':>5} {'score':>6}"
    )
    for module, (detected, hung, crashed, total) in sorted(totals.items()):
        score = detected / total
        goal = next(g for prefix, g in GOALS.items() if module.startswith(prefix))
        mark = "" if score >= goal else f"  below the goal of {goal:.0%}"
        failed |= bool(mark)
        print(
            f"{module:<24} {total:>7} {detected:>6} {hung:>6} {crashed:>7} "
            f"{total - detected:>5} {score:>6.1%}{mark}"
        )
    if explained:
        print(f"\n{len(explained)} survivors listed as equivalent:")
        print("\n".join(explained))
    if unexplained:
        print(f"\n{len(unexplained)} survivors to kill with a test, or to list:")
        print("\n".join(unexplained))
    return 1 if failed or unexplained or unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
