"""`whatsapp-bridge`: run the bridge, starting whatever backing service is not configured.

The one entry point: it configures logging, fills in the local stack (PostgreSQL, Valkey, Ray) for every
URL left unset, migrates the database, makes sure the session registry runs, then serves the API until
Ctrl+C or SIGTERM, and stops what it started in reverse order.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from pydantic import SecretStr, ValidationError

from api import ray_driver
from kernel import redact
from kernel.settings import Settings

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

DESCRIPTION = """\
Self-hosted WhatsApp bridge: one Ray actor per WhatsApp number, a REST and WebSocket API for a web inbox.

Runs the API on WHATSAPP_BRIDGE_HOST:WHATSAPP_BRIDGE_PORT (default 127.0.0.1:8000; GET /health shows
what is up). Every backing service whose URL is unset is started here and stopped on exit, with its
data kept under WHATSAPP_BRIDGE_DATA_DIR (default ./.data), so a plain `whatsapp-bridge` runs
everything on one machine and finds its data again on the next start:

  DATABASE_URL unset      embedded PostgreSQL on 127.0.0.1 (data in <data dir>/pg)
  REDIS_URL unset         embedded Valkey on 127.0.0.1 (data in <data dir>/valkey)
  RAY_ADDRESS unset       a local Ray head with its dashboard on 127.0.0.1 (<data dir>/ray)
  RAY_ADDRESS set         the cluster's head (host:port), or `auto`; a Ray driver must run on a
                          node of the cluster, so on a machine that is not one, join first:
                          ray start --address=host:port --num-cpus=0 --resources='{"wa_session": 0}'
                          (the container's entry point, deploy/entrypoint.sh, does this)
  WHATSAPP_BRIDGE_API_KEY unset
                          a key is generated once and kept in <data dir>/api_key (mode 0600);
                          clients send it as the X-API-Key header
"""

EPILOG = """\
Other settings (environment variables, or a .env file in the working directory):
  WA_BACKEND              neonize (real WhatsApp, default) or simulated (no phone needed)
  MAX_SESSIONS_PER_USER   WhatsApp numbers per user (3)
  MAX_MEDIA_BYTES         largest upload (16 MB)
  LOG_LEVEL               DEBUG, INFO (default), WARNING, ERROR
  See .env.example for every setting and its default.

Operations on a running bridge (through its API: WHATSAPP_BRIDGE_URL, the API key as above):
  whatsapp-bridge sessions                           every session: node, pid, status, uptime, memory
  whatsapp-bridge drain NODE                         move every session off a node before maintenance
  whatsapp-bridge rebalance                          spread sessions over the nodes by capacity
  whatsapp-bridge spool replay [--session ID]        apply the writes PostgreSQL could not (once fixed)

On a Ray node of the cluster (a worker pod's preStop, deploy/kuberay/raycluster.yaml):
  whatsapp-bridge leave [--deadline S]               drain this node and wait until its sessions moved

Examples:
  whatsapp-bridge                                    everything local, data in ./.data
  WA_BACKEND=simulated whatsapp-bridge               a demo without a phone
  DATABASE_URL=postgresql://bridge@db/bridge REDIS_URL=redis://cache:6379/0 \\
    RAY_ADDRESS=auto whatsapp-bridge                  against shared services, on a Ray node
"""


OPS_COMMANDS = ("sessions", "drain", "rebalance", "spool")  # api.ops_cli
GCS_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"
# A year: "never" for an operator, and small enough for Ray's uint32 setting (verified with Ray 2.60).
DRIVER_GCS_RECONNECT_TIMEOUT_S = 365 * 24 * 3600


class AlreadyRunning(Exception):
    """Another run holds the data directory."""


class Shutdown(BaseException):
    """SIGTERM arrived: unwind like Ctrl+C does (a BaseException, so no `except Exception` eats it)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatsapp-bridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="%(prog)s 0.1.0")
    return parser


def configure_logging(level: str, secrets: Iterable[str | None] = ()) -> None:
    """The process's one logging setup; every module logs through `logging.getLogger(__name__)`.

    Every line is redacted (kernel/redact.py): `secrets` and any token, key or URL password in it.
    """
    logging.basicConfig(level=level, format=LOG_FORMAT)
    redact.install(LOG_FORMAT, secrets)
    # Alembic lists every plugin it loads at INFO; the migrations it runs stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _load_settings() -> Settings | None:
    try:
        return Settings()
    except ValidationError as err:
        configure_logging("INFO")
        # Field name and message only: the input could be a secret.
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors())
        log.error("invalid configuration: %s", problems)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in OPS_COMMANDS:
        from api import ops_cli

        return ops_cli.main(args)
    if args and args[0] == "leave":
        from api import leave

        return leave.main(args[1:])
    _parser().parse_args(argv)
    settings = _load_settings()
    if settings is None:
        return 2
    configure_logging(settings.log_level, _secrets(settings))
    return run(settings)


def _secrets(settings: Settings) -> list[str | None]:
    """What must never be logged: the API key and the passwords in the service URLs."""
    key = settings.whatsapp_bridge_api_key
    return [
        key.get_secret_value() if key else None,
        redact.url_password(settings.database_url),
        redact.url_password(settings.redis_url),
        os.environ.get("RAY_AUTH_TOKEN"),
    ]


def run(settings: Settings) -> int:
    """Start, serve until a signal, stop everything started here. The exit code."""
    started = time.monotonic()
    code = 0
    stack = ExitStack()
    previous = signal.signal(signal.SIGTERM, _raise_shutdown)
    try:
        settings = start_stack(settings, stack)
        log.info("started in %.1f s; starting the API", time.monotonic() - started)
        serve(settings)
    except (KeyboardInterrupt, Shutdown):
        log.debug("interrupted")  # the usual way to stop; uvicorn may also just return
    except SystemExit as exc:  # uvicorn exits this way when it cannot bind its port
        code = exc.code if isinstance(exc.code, int) else 1
    except AlreadyRunning as exc:
        log.error("%s", exc)
        code = 1
    except Exception:
        log.exception("whatsapp-bridge failed")
        code = 1
    finally:
        # A second Ctrl+C must not cut the stop short and leave servers behind.
        _ignore_signals()
        log.info("stopping")
        code = _stop(stack) or code
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
    return code


def _stop(stack: ExitStack) -> int:
    """Stop everything on `stack` (each step runs even if an earlier one failed); 1 on failure."""
    started = time.monotonic()
    try:
        stack.close()
    except Exception:
        log.exception("stopping failed")
        return 1
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise Shutdown


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def start_stack(settings: Settings, stack: ExitStack) -> Settings:
    """Start what is missing (registered on `stack` to be stopped), migrate, reach Ray and the registry.

    Returns the settings with every URL and the API key filled in.
    """
    from api import localstack

    data_dir = settings.whatsapp_bridge_data_dir.expanduser().resolve()
    if None in (
        settings.database_url,
        settings.redis_url,
        settings.ray_address,
        settings.whatsapp_bridge_api_key,
    ):
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the API key and the data
        stack.enter_context(_exclusive(data_dir))
        log.info("data directory: %s", data_dir)
    _warn_unreachable(settings)
    # Each `or` starts the embedded service only when its URL is unset.
    database_url = settings.database_url or stack.enter_context(
        localstack.embedded_postgres(
            data_dir / "pg", max_connections=localstack.pg_max_connections(settings.wa_sessions_per_node)
        )
    )
    redis_url = settings.redis_url or stack.enter_context(localstack.embedded_valkey(data_dir / "valkey"))
    ray_address = settings.ray_address or stack.enter_context(
        localstack.local_ray(settings, data_dir / "ray")
    )
    api_key = settings.whatsapp_bridge_api_key or _local_api_key(data_dir / "api_key")
    redact.install(LOG_FORMAT, [api_key.get_secret_value()])
    settings = settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": redis_url,
            "ray_address": ray_address,
            "whatsapp_bridge_api_key": api_key,
        }
    )
    _migrate(database_url)
    _connect_ray(ray_address, settings.ray_namespace, stack)
    _ensure_registry(settings)
    stack.enter_context(ray_driver.supervised(_ray_driver(ray_address, settings)))
    return settings


def _warn_unreachable(settings: Settings) -> None:
    """Session actors on other machines connect to PostgreSQL and Redis too; 127.0.0.1 is not them."""
    if settings.ray_address is not None and (settings.database_url is None or settings.redis_url is None):
        log.warning(
            "RAY_ADDRESS is set but DATABASE_URL or REDIS_URL is not: the embedded services listen on "
            "127.0.0.1 only, so session actors on other machines of the cluster cannot reach them"
        )


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """One run per data directory: two would fight over the same servers."""
    with (data_dir / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(f"another whatsapp-bridge is running with data in {data_dir}") from None
        yield


def _local_api_key(path: Path) -> SecretStr:
    """The local run's API key: generated on first start, kept in `path` (0600), never logged."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        log.info("API key: read from %s", path)
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        log.info("API key: generated and stored in %s (send it as X-API-Key)", path)
    key = path.read_text().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it and a new key is generated")
    return SecretStr(key)


def _migrate(database_url: str) -> None:
    from persistence.migrate import upgrade

    started = time.monotonic()
    upgrade(database_url)
    log.info("database migrated in %.1f s", time.monotonic() - started)


def _connect_ray(address: str, namespace: str, stack: ExitStack) -> None:
    # Ray ends a driver whose GCS stays unreachable longer than this (60 s by default), whatever the
    # environment says for the nodes: the API must outlive a head outage of any length, answering 503
    # for what needs Ray meanwhile. Read when ray.init starts the driver's core worker; the cluster's
    # own processes keep their value. (A head's --system-config would override it: never set it there.)
    os.environ[GCS_RECONNECT_ENV] = str(DRIVER_GCS_RECONNECT_TIMEOUT_S)
    # Imported only now: a local head has put the driver's settings into the environment, and Ray
    # reads some of them when it is imported.
    import ray

    # Ray gives its logger a handler of its own at import; its lines go through our format instead.
    ray_logger = logging.getLogger("ray")
    ray_logger.handlers.clear()
    ray_logger.propagate = True
    _ray_init(address, namespace)
    stack.callback(ray.shutdown)
    # ray.init installs a SIGTERM handler that calls sys.exit; ours unwinds the same way as Ctrl+C.
    signal.signal(signal.SIGTERM, _raise_shutdown)


def _ray_init(address: str, namespace: str) -> None:
    import ray

    # log_to_driver=False: session logs stay in Ray's log files (streaming them here cost the API ~6 % CPU).
    ray.init(address=address, namespace=namespace, configure_logging=False, log_to_driver=False)


def _ray_driver(address: str, settings: Settings) -> ray_driver.RayDriver:
    """Connects this driver again, and ensures the registry, if its cluster is replaced (`api.ray_driver`)."""
    import ray

    from actors.registry import REGISTRY_NAME

    def lookup() -> object:
        # A GCS call every time (ray.get_actor can answer from the driver's cache with the GCS gone).
        names = ray.util.list_named_actors(all_namespaces=False)
        return REGISTRY_NAME if REGISTRY_NAME in names else None

    return ray_driver.RayDriver(
        lambda: _ray_init(address, settings.ray_namespace), lambda: _ensure_registry(settings), lookup
    )


def _ensure_registry(settings: Settings) -> None:
    from api.wiring import ensure_registry

    ensure_registry(settings)
    log.info("session registry running in namespace %s", settings.ray_namespace)


def serve(settings: Settings) -> None:
    """Serve the API until uvicorn sees SIGINT/SIGTERM (it re-raises the signal once it has stopped)."""
    import uvicorn

    from api.app import create_app

    # A wildcard bind is reached through loopback from this machine.
    host = settings.whatsapp_bridge_host
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{settings.whatsapp_bridge_port}"
    log.info("API: %s (docs at %s/docs)", base, base)
    if settings.console_enabled:
        log.info("console: %s/ (it asks for the API key and a user id)", base)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.whatsapp_bridge_host,
        port=settings.whatsapp_bridge_port,
        log_config=None,  # keep ours
        # Off: request lines would carry the WebSocket `?token=` of browsers into the log.
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    sys.exit(main())
