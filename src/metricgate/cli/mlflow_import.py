"""``metricgate users import-mlflow BASIC_AUTH_DB``: MLflow's auth users, roles and grants into
metricgate, through the database URL like ``users create-admin`` (no server, no admin needed:
it may well bring the first admin). One transaction, audited; a name that exists here stops it
before anything is written, unless ``--skip-existing`` (docs/design-auth.md B9).

Exit status: 0 imported; 1 the file or the database refused (nothing written); 2 a
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from metricgate.cli.settings import settings_or_report
from metricgate.config import Settings

if TYPE_CHECKING:
    from metricgate.auth.mlflow_import import MlflowAuthData


def add_import_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import-mlflow",
        help="import users, roles and grants from MLflow's auth database (basic_auth.db); "
        "straight to the database, no server needed",
    )
    parser.add_argument("path", metavar="BASIC_AUTH_DB", help="MLflow's auth SQLite file")
    parser.add_argument("--database-url", help="PostgreSQL URL (env METRICGATE_DATABASE_URL)")
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave users and roles whose name exists here untouched (with their grants and "
        "assignments from the file) instead of refusing the whole import",
    )


def run_import_mlflow(args: argparse.Namespace) -> int:
    from metricgate.auth.mlflow_import import ImportRefused, read_mlflow_auth

    settings = settings_or_report(database_url=args.database_url)
    if settings is None:
        return 2
    try:
        found = read_mlflow_auth(args.path)
    except ImportRefused as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    return asyncio.run(_import(settings, found, args.path, skip_existing=args.skip_existing))


async def _import(
    settings: Settings, found: MlflowAuthData, path: str, *, skip_existing: bool
) -> int:
    import asyncpg

    from metricgate.auth.bootstrap import SYSTEM, process_details
    from metricgate.domain.errors import AlreadyExists, MetricgateError
    from metricgate.service import open_auth_store

    details = {**process_details("metricgate users import-mlflow"), "source": Path(path).name}
    try:
        async with open_auth_store(settings) as store:
            outcome = await store.import_users(
                found.data, skip_existing=skip_existing, audit=SYSTEM, details=details
            )
    except AlreadyExists as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    except (OSError, MetricgateError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"metricgate: cannot write to {settings.postgres}: {exc}", file=sys.stderr)
        return 1
    admins = sum(1 for u in found.data.users if u.is_admin and u.username in outcome.users)
    print(
        f"imported from {path} (MLflow auth revision {found.revision}): "
        f"{len(outcome.users)} users ({admins} admins), {len(outcome.roles)} roles, "
        f"{outcome.grants} grants, {outcome.assignments} role assignments"
    )
    if outcome.skipped_users:
        print("skipped existing users: " + ", ".join(outcome.skipped_users))
    if outcome.skipped_roles:
        print("skipped existing roles: " + ", ".join(outcome.skipped_roles))
    for note in found.notes:
        print(f"note: {note}")
    print(
        "Passwords keep MLflow's hashes and become argon2id at each user's first login. "
        "Experiment grants name MLflow's experiment ids: they apply to the experiments that "
        "have those ids here."
    )
    return 0
