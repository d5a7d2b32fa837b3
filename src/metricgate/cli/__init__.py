"""Command line: every ``metricgate`` command. This package holds all the front ends (``serve``,
``flush``, ``migrate`` here; ``bench``, the HTTP admin commands and the artifact transfer commands
in the modules beside it); the commands' HTTP goes through ``cli.http`` and the client library's
one error type."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from functools import partial

from metricgate import __version__
from metricgate.cli.approvals import COMMANDS as APPROVAL_COMMANDS
from metricgate.cli.approvals import add_approvals_parsers, run_approvals
from metricgate.cli.artifacts import add_artifacts_parser, run_artifacts
from metricgate.cli.audit import add_audit_parser, run_audit
from metricgate.cli.auth import COMMANDS as AUTH_COMMANDS
from metricgate.cli.auth import add_auth_parsers, run_auth
from metricgate.cli.bench import add_bench_parser, run_bench
from metricgate.cli.registry import add_registry_parser, run_registry
from metricgate.cli.settings import settings_or_report
from metricgate.cli.webhooks import add_webhooks_parser, run_webhooks
from metricgate.config import ConfigError, Settings
from metricgate.domain.errors import MetricgateError

log = logging.getLogger("metricgate")

_DESCRIPTION = """\
metricgate: an MLflow-compatible tracking server.

Point an unmodified mlflow client at it with MLFLOW_TRACKING_URI=http://HOST:PORT.
Settings come from METRICGATE_* environment variables; flags override them:
  METRICGATE_DATABASE_URL   postgresql://user@host:port/db            (metadata and metrics)
  METRICGATE_REDIS_URL      redis://host:port/db                      (ingest streams)
  METRICGATE_ARTIFACTS_URI  file:///abs/path or s3://bucket/prefix    (artifact root)
  METRICGATE_HOST / METRICGATE_PORT                                   (listen address, default 127.0.0.1:5000)
"""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="PostgreSQL URL (env METRICGATE_DATABASE_URL)")
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (env METRICGATE_LOG_LEVEL)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metricgate",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"metricgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the tracking server (HTTP API)")
    _add_common(serve)
    serve.add_argument("--host", help="listen address (env METRICGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (env METRICGATE_PORT, default 5000)")
    serve.add_argument("--redis-url", help="Redis URL (env METRICGATE_REDIS_URL)")
    serve.add_argument(
        "--artifacts-uri",
        help="artifact root, file:///... or s3://... (env METRICGATE_ARTIFACTS_URI)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="HTTP worker processes sharing the port (SO_REUSEPORT); each embeds a flusher unless --no-flusher",
    )
    serve.add_argument(
        "--no-flusher",
        dest="embedded_flusher",
        action="store_false",
        default=None,
        help="do not run a flusher inside the server; run `metricgate flush` separately "
        "(env METRICGATE_EMBEDDED_FLUSHER)",
    )
    serve.add_argument(
        "--migrate",
        action="store_true",
        default=None,
        help="apply pending database migrations before serving (env METRICGATE_MIGRATE_ON_START)",
    )

    migrate = sub.add_parser("migrate", help="apply pending database migrations and exit")
    _add_common(migrate)

    add_bench_parser(sub)  # load generator; needs no METRICGATE_* settings
    add_registry_parser(sub)  # talks to a running server over HTTP; needs no settings either
    add_webhooks_parser(sub)  # the same: HTTP to a running server
    add_artifacts_parser(sub)  # resumable artifact upload/download over HTTP
    add_auth_parsers(sub)  # users, roles, permissions, tokens over HTTP (`users create-admin`: DSN)
    add_approvals_parsers(sub)  # registry approvals and policies over HTTP
    add_audit_parser(sub)  # the audit log over HTTP

    flush = sub.add_parser(
        "flush", help="run flusher workers only: drain the Redis ingest streams into PostgreSQL"
    )
    _add_common(flush)
    flush.add_argument("--redis-url", help="Redis URL (env METRICGATE_REDIS_URL)")
    flush.add_argument(
        "--workers", type=int, default=1, help="flusher workers in this process (default 1)"
    )
    return parser


def _configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from metricgate.observability import JsonLogFormatter

        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=getattr(logging, level, logging.INFO), handlers=[handler])


def _run_serve(settings: Settings, workers: int) -> int:
    from metricgate.server import serve_forever, serve_workers

    log.info(
        "metricgate %s starting (database %s, redis %s, ingest %s, artifacts %s)",
        __version__,
        settings.postgres,
        settings.redis,
        settings.ingest.mode,
        settings.artifacts.uri,
    )
    if workers > 1:
        return serve_workers(
            settings, workers, partial(_configure_logging, settings.log_level, settings.log_format)
        )
    serve_forever(settings)
    return 0


def _run_flush(settings: Settings, workers: int) -> int:
    from metricgate.server import flush_forever

    flush_forever(settings, workers)
    return 0


def _run_migrate(settings: Settings) -> int:
    import asyncpg

    from metricgate.stores.postgres.migrate import migrate_url

    try:
        applied = asyncio.run(migrate_url(settings.postgres.url))
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"metricgate: cannot migrate {settings.postgres}: {exc}", file=sys.stderr)
        return 1
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("database schema is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "registry":
        return run_registry(args)
    if args.command == "webhooks":
        return run_webhooks(args)
    if args.command == "artifacts":
        return run_artifacts(args)
    if args.command in AUTH_COMMANDS:
        return run_auth(args)
    if args.command in APPROVAL_COMMANDS:
        return run_approvals(args)
    if args.command == "audit":
        return run_audit(args)
    overrides = {
        "database_url": args.database_url,
        "log_level": args.log_level,
    }
    if args.command == "serve":
        overrides.update(
            host=args.host,
            port=args.port,
            redis_url=args.redis_url,
            artifacts_uri=args.artifacts_uri,
            migrate_on_start=args.migrate,
            embedded_flusher=args.embedded_flusher,
        )
    elif args.command == "flush":
        overrides.update(redis_url=args.redis_url)
    settings = settings_or_report(**overrides)
    if settings is None:
        return 2
    _configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            return _run_serve(settings, args.workers)
        if args.command == "flush":
            return _run_flush(settings, args.workers)
        return _run_migrate(settings)
    except ConfigError as exc:
        # Found only once a store is opened, e.g. an s3:// bucket that is missing or refuses us.
        print(f"metricgate: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MetricgateError) as exc:
        # Start-up failures a user can act on (port taken, database down or not migrated).
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
