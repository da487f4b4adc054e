"""Check that the test suite still kills the mutations listed in ``tests/mutations.json``.

Each entry replaces one piece of implementation text (``find`` -> ``replace``) in ``file``, runs the named
tests, and puts the file back. A mutation is KILLED when the tests fail, SURVIVED when they pass (the suite
has lost a test), STALE when ``find`` no longer occurs exactly once (the code was rewritten: update the entry
to the new code). Run from the repository root; it takes a few minutes::

    python tests/run_mutations.py            # all of them
    python tests/run_mutations.py PGD best   # those whose name contains one of the words

Exits 1 if any mutation survived or is stale. The file is restored even when interrupted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    """The caller's environment with this checkout first on the path: the tests run with the same interpreter
    (``sys.executable``) on the code that was just mutated, not on another checkout named in PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def run_one(entry: dict) -> str:
    path = ROOT / entry["file"]
    source = path.read_text()
    if source.count(entry["find"]) != 1:
        return "STALE"
    path.write_text(source.replace(entry["find"], entry["replace"]))
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *entry["tests"]],
                              cwd=ROOT, capture_output=True, text=True, env=_env())
    finally:
        path.write_text(source)
    return "KILLED" if proc.returncode != 0 else "SURVIVED"


def main(words: list[str]) -> int:
    entries = json.loads((ROOT / "tests" / "mutations.json").read_text())
    chosen = [e for e in entries if not words or any(w.lower() in e["mutant"].lower() for w in words)]
    bad = 0
    for entry in chosen:
        result = run_one(entry)
        bad += result != "KILLED"
        print(f"{result:8} {entry['mutant']}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
