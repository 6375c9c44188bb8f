"""How long each test module took, kept in tests/module_seconds.json for the order the suite runs in.

    .venv/bin/python -m tests.module_seconds JUNIT_XML   # from `make test PYTEST_ARGS=--junitxml=JUNIT_XML`

`tests/conftest.py` runs the longest modules first (within the modules with a Ray of their own, then
the others), so both workers end on short ones instead of one waiting minutes for the other's last
long module. A module missing from the file counts as `UNMEASURED_S`.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

FILE = Path(__file__).with_name("module_seconds.json")
UNMEASURED_S = 10.0


def measured() -> dict[str, float]:
    """Seconds by module file name (`test_x.py`); empty when the file is missing or unreadable."""
    try:
        data = json.loads(FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def from_junit(path: Path) -> dict[str, float]:
    """Each module's time in a JUnit report: its tests' times (set-up and teardown included)."""
    totals: dict[str, float] = defaultdict(float)
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = next((part for part in reversed(module) if part.startswith("test_")), None)
        if name is not None:
            totals[f"{name}.py"] += float(case.get("time") or 0.0)
    return {name: round(seconds, 1) for name, seconds in sorted(totals.items())}


if __name__ == "__main__":
    found = from_junit(Path(sys.argv[1]))
    FILE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"{len(found)} modules, {sum(found.values()):.0f} s in all: {FILE}")
