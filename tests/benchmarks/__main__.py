"""Run the benchmarks: all of them at full size, one of them with its own options, or all in a quick pass.

    .venv/bin/python -m tests.benchmarks                      # every benchmark, full size (~55 min)
    .venv/bin/python -m tests.benchmarks memory --sizes 10    # one, with its options (see its --help)
    .venv/bin/python -m tests.benchmarks --quick              # every one at trial size (~15 min)
    .venv/bin/python -m tests.benchmarks --list

`make bench` runs the first form; `make bench BENCH_ARGS="memory --sizes 10 --idle-s 5"` any other.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence

# name → (module, what it measures, options for --quick)
BENCHMARKS: dict[str, tuple[str, str, list[str]]] = {
    "memory": (
        "bench_memory",
        "1. memory and idle CPU per session (simulated and neonize)",
        ["--sizes=10", "--idle-s=10", "--settle-s=5"],
    ),
    "capacity": (
        "bench_capacity",
        "2. sessions held with /health p99 <= 100 ms and send p99 <= 250 ms",
        ["--steps=10,20", "--probe-s=10", "--settle-s=5"],
    ),
    "reload": ("bench_reload", "3. cold reload of the whole cluster", ["--sizes=10"]),
    "failover": ("bench_failover", "4. a worker node of 3 killed", ["--sessions=12"]),
    "api": ("bench_api", "5. send/text at 1, 10, 100 clients", ["--sessions=10", "--duration=5"]),
    "events": ("bench_events", "6. incoming message → WebSocket frame", ["--sessions=10", "--duration=5"]),
    "first_qr": ("bench_first_qr", "7. POST /sessions → first QR frame", ["--sessions=5"]),
    "drain": (
        "bench_drain",
        "8. drain a node of N sessions; autoscale up from pending to connected",
        ["--sessions=10", "--autoscale-sessions=6"],
    ),
    "webhooks": (
        "bench_webhooks",
        "9. events → webhook receivers: latency, CPU per delivery, one 10 s receiver",
        ["--webhooks=10", "--sessions=20", "--rate=50", "--duration=5"],
    ),
    "resume": (
        "bench_resume",
        "10. 1,000 WebSockets resuming with a cursor after an API restart",
        ["--users=200", "--entries=20000", "--floor-s=5"],
    ),
    "eventlog": (
        "bench_eventlog",
        "11. logging an event and resuming a WebSocket: CPU before/after the index by session",
        ["--events=2000", "--entries=10000", "--sessions=100", "--resumes=5"],
    ),
    "send_cpu": ("bench_send_cpu", "12. CPU per send_text: session, PostgreSQL, Valkey", ["--sends=300"]),
    "levers": ("bench_levers", "memory levers, N=10 (not part of the full run)", ["--idle-s=5"]),
}
FULL_RUN = (
    "memory",
    "reload",
    "failover",
    "api",
    "events",
    "first_qr",
    "drain",
    "capacity",
    "webhooks",
    "resume",
    "eventlog",
    "send_cpu",
)


def run(name: str, argv: Sequence[str]) -> bool:
    module = importlib.import_module(f"tests.benchmarks.{BENCHMARKS[name][0]}")
    print(f"\n######## {name}: {' '.join(argv) or '(defaults)'}", flush=True)
    started = time.monotonic()
    try:
        module.main(list(argv))
    except (Exception, SystemExit) as err:  # one failing benchmark must not hide the others' figures
        if isinstance(err, SystemExit) and err.code in (0, None):
            return True
        print(f"######## {name} FAILED after {time.monotonic() - started:.0f}s: {err!r}", flush=True)
        return False
    print(f"######## {name} done in {time.monotonic() - started:.0f}s", flush=True)
    return True


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "--list"):
        print(__doc__)
        for name, (_, what, _quick) in BENCHMARKS.items():
            print(f"  {name:9s} {what}")
        return 0
    if argv and argv[0] in BENCHMARKS:
        return 0 if run(argv[0], argv[1:]) else 1
    quick = "--quick" in argv
    if [a for a in argv if a != "--quick"]:
        print(f"unknown arguments {list(argv)}; see --list", file=sys.stderr)
        return 2
    failed = [name for name in FULL_RUN if not run(name, BENCHMARKS[name][2] if quick else [])]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
