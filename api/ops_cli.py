"""`whatsapp-bridge sessions | drain NODE | rebalance | spool replay`: the ops routes of a running bridge.

They talk to the API over HTTP (`GET /ops/sessions`, `POST|DELETE /ops/nodes/{nodeId}/drain`,
`POST /ops/rebalance`, `POST /ops/spool/replay`), so they work from any machine that reaches it, inside
the Ray cluster or not (each session replays its own spool on its own node).
The API is at WHATSAPP_BRIDGE_URL, else http://WHATSAPP_BRIDGE_HOST:WHATSAPP_BRIDGE_PORT; the key is
WHATSAPP_BRIDGE_API_KEY, else the local run's `<data dir>/api_key`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import httpx

from kernel.settings import Settings

COMMANDS = ("sessions", "drain", "rebalance", "spool")
HTTP_TIMEOUT_S = 30.0
POLL_S = 1.0


class OpsError(Exception):
    """The API refused or could not be reached; the message says why (never the key)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whatsapp-bridge", description="Operate a running bridge's Ray cluster.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the API (default WHATSAPP_BRIDGE_URL, else http://HOST:PORT of the settings)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "sessions", parents=[common], help="every session: node, pid, status, uptime, restarts, memory"
    )
    s.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    d = sub.add_parser("drain", parents=[common], help="move every session off a node, then return")
    d.add_argument("node", help="the node id (hex) or a unique prefix of at least 6 digits")
    d.add_argument("--no-wait", action="store_true", help="start it and return")
    d.add_argument(
        "--force", action="store_true", help="drain even if the other nodes cannot hold its sessions"
    )
    d.add_argument("--cancel", action="store_true", help="cancel the node's drain: it takes sessions again")
    r = sub.add_parser(
        "rebalance", parents=[common], help="move sessions from the fullest nodes to the emptiest"
    )
    r.add_argument("--no-wait", action="store_true", help="start it and return")
    sp = sub.add_parser("spool", help="the writes sessions set aside because PostgreSQL could not apply them")
    spool = sp.add_subparsers(dest="spool_command", required=True)
    replay = spool.add_parser(
        "replay",
        parents=[common],
        help="apply them now (once their cause is fixed); one that fails again is set aside again",
    )
    replay.add_argument("--session", help="only this session (its id)")
    return p


def main(argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    try:
        with _client(args.url) as client:
            if args.command == "sessions":
                return _sessions(client, out, as_json=args.json)
            if args.command == "spool":
                return _replay(client, out, args.session)
            if args.command == "drain":
                path = f"/ops/nodes/{args.node}/drain"
                if args.cancel:
                    body = _call(client, "DELETE", path)
                    print(f"drain of node {body['nodeId'][:12]} cancelled; it takes sessions again", file=out)
                    return 0
                params = {"force": "true"} if args.force else None
                return _operation(client, path, out, wait=not args.no_wait, params=params)
            return _operation(client, "/ops/rebalance", out, wait=not args.no_wait)
    except OpsError as err:
        print(f"whatsapp-bridge {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted; the operation goes on in the registry (run the command again to follow it)",
            file=out,
        )
        return 130


def _client(url: str | None) -> httpx.Client:
    settings = Settings()
    base = url or os.environ.get("WHATSAPP_BRIDGE_URL")
    if not base:
        host = settings.whatsapp_bridge_host
        base = (
            f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{settings.whatsapp_bridge_port}"
        )
    key = settings.whatsapp_bridge_api_key.get_secret_value() if settings.whatsapp_bridge_api_key else None
    if key is None:
        path = settings.whatsapp_bridge_data_dir.expanduser() / "api_key"
        try:
            key = path.read_text().strip()
        except OSError:
            raise OpsError(f"no WHATSAPP_BRIDGE_API_KEY and no {path}") from None
    return httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=HTTP_TIMEOUT_S)


def _call(client: httpx.Client, method: str, path: str, params: dict[str, str] | None = None) -> Any:
    try:
        response = client.request(method, path, params=params)
    except httpx.HTTPError as err:
        raise OpsError(f"cannot reach the API at {client.base_url} ({type(err).__name__})") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except Exception:
            message = response.text[:200]
        raise OpsError(f"{response.status_code}: {message}")
    return response.json()


def _sessions(client: httpx.Client, out: TextIO, *, as_json: bool) -> int:
    body = _call(client, "GET", "/ops/sessions")
    if as_json:
        json.dump(body, out, indent=2)
        print(file=out)
        return 0
    rows: list[tuple[str, ...]] = [("SESSION", "NODE", "PID", "STATUS", "UPTIME", "RESTARTS", "RSS")]
    for s in body["items"]:
        rows.append(
            (
                s["sessionId"],
                (s["nodeId"] or "-")[:12],
                str(s["pid"] or "-"),
                s["status"] or s["state"].lower(),
                _duration(s["uptimeS"]),
                str(s["restarts"]),
                _mib(s["rssBytes"]),
            )
        )
    _table(rows, out)
    print(file=out)
    nodes: list[tuple[str, ...]] = [("NODE", "ADDRESS", "SESSIONS", "CAPACITY", "STATE")]
    for n in body["nodes"]:
        state = "draining" if n["draining"] else ("head" if n["isHead"] else "ready")
        nodes.append((n["nodeId"][:12], n["address"], str(n["sessions"]), str(n["capacity"]), state))
    _table(nodes, out)
    return 0


def _replay(client: httpx.Client, out: TextIO, session_id: str | None) -> int:
    """1 when a session could not be asked (it keeps its entries: run the command again)."""
    body = _call(client, "POST", "/ops/spool/replay", {"sessionId": session_id} if session_id else None)
    for item in body["items"]:
        if item["error"] or item["replayed"]:
            done = f"error {item['error']}" if item["error"] else f"{item['replayed']} requeued"
            print(f"  {item['sessionId']}: {done}", file=out)
    sessions = len(body["items"])
    print(f"{body['replayed']} set-aside writes requeued over {sessions} sessions", file=out)
    return 1 if any(item["error"] for item in body["items"]) else 0


def _operation(
    client: httpx.Client, path: str, out: TextIO, *, wait: bool, params: dict[str, str] | None = None
) -> int:
    body = _call(client, "POST", path, params)
    what = body["operation"] + (f" of node {body['nodeId'][:12]}" if body.get("nodeId") else "")
    print(f"{what} started (operation {body['id']}, {body['state']})", file=out, flush=True)
    reported = -1
    while wait and not _finished(body):
        time.sleep(POLL_S)
        body = _call(client, "GET", path)
        if len(body["moved"]) != reported:
            reported = len(body["moved"])
            print(_progress(body), file=out, flush=True)
    print(_progress(body) if wait else "running in the registry; follow it with the same command", file=out)
    failed = [m for m in body["moved"] if m["error"] or not m["toNode"]]
    for m in failed:
        print(f"  {m['sessionId']}: {m['error'] or 'not placed again'}", file=out)
    return 1 if failed or (wait and body["left"] and body["operation"] == "drain") else 0


def _finished(body: dict[str, Any]) -> bool:
    """Done, or no longer running (cancelled: the sessions `left` say so)."""
    return bool(body["done"]) or not body["running"]


def _progress(body: dict[str, Any]) -> str:
    moved = len(body["moved"])
    waiting = f", {len(body['waiting'])} waiting for their spool" if body["waiting"] else ""
    return f"{moved} moved, {body['left']} left{waiting} ({body['elapsedS']:.0f}s)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
