"""Imported by `bench_levers` to measure Go's runtime alone: loading neonize's library starts it (its
constructor runs at dlopen), without importing any of neonize's Python modules."""

import ctypes
import importlib.util
import time
from pathlib import Path

_spec = importlib.util.find_spec("neonize")
assert _spec is not None and _spec.origin is not None
LIBRARY = ctypes.CDLL(str(Path(_spec.origin).parent / "neonize-linux-amd64.so"))
time.sleep(1.0)  # the runtime's threads and first heap arena are up by then
