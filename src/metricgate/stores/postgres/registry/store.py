"""The model registry in PostgreSQL: registered models, versions, tags, aliases, audit history.

Every write runs in one transaction with the audit event(s) it produces (registry_events), so
the history and the webhooks outbox never miss or invent a change. Version writes live in
versions.py, row loading in load.py, searches in search.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from metricgate.domain.auth.permissions import ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility
from metricgate.domain.errors import AlreadyExists, NotFound
from metricgate.domain.registry.entities import Audit, ModelVersion, RegisteredModel, RegistryEvent
from metricgate.domain.search.paging import decode_page_token, encode_page_token
from metricgate.domain.tracking.entities import Page, Tag
from metricgate.stores.base import AuditContext
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.experiments import now_ms
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.registry import approvals, events, versions
from metricgate.stores.postgres.registry.load import (
    alias_not_found,
    latest_version_keys,
    load_models,
    load_version,
    load_versions,
    lock_model,
    model_key_of,
    version_not_found,
)
from metricgate.stores.postgres.registry.search import (
    compile_model_version_search,
    compile_registered_model_search,
)


def _exists(name: str) -> AlreadyExists:
    return AlreadyExists(f"Registered Model (name={name}) already exists.")


class PgRegistryStore:
    def __init__(self, db: Database, *, auth_on: bool = False) -> None:
        """A rename moves the model's grants to the new name and a delete removes them, in the
        registry write's own transaction (design-auth B2; stock does it in after-request hooks,
        where a crash leaves them behind), whatever the auth mode: the grants stay in their
        tables while auth is off, and a model made under a deleted model's name must not
        inherit them once it is on. Such a write first locks the names it touches
        (``auth.lock_model_names``), as do grant writes on a model name and creates that write
        a creator's grant: writes of other models never wait for it. ``auth_on`` false: grant
        writes do not come through the API, so the names are locked only when one probe finds
        grants on them, and a write of names without grants costs that probe alone."""
        self._db = db
        self._auth_on = auth_on

    async def _lock_names_with_grants(self, conn: PgConnection, *names: str) -> bool:
        """Take the names' locks (before the model row: the lock order) where grants may
        follow; whether they may (with auth off: whether the names hold any)."""
        if not self._auth_on and not await auth.any_model_grants(conn, *names):
            return False
        await auth.lock_model_names(conn, *names)
        return True

    @contextlib.asynccontextmanager
    async def _write(self, name: str) -> AsyncIterator[PgConnection]:
        """A transaction in which a unique-name violation means "that model already exists"
        (two concurrent creates or renames to one name: the loser gets MLflow's error)."""
        try:
            async with self._db.transaction() as conn:
                yield conn
        except asyncpg.UniqueViolationError as exc:
            raise _exists(name) from exc

    # ------------------------------------------------------------ registered models

    async def create_registered_model(
        self,
        audit: Audit,
        name: str,
        tags: Sequence[Tag],
        description: str | None,
        creator: int | None = None,
    ) -> RegisteredModel:
        """``creator``: the user id that gets MANAGE on the new model, in this transaction (a
        crash cannot leave a model without its creator's grant); None: nobody (auth off, an
        admin)."""
        now = now_ms()
        async with self._write(name) as conn:
            if creator is not None:
                await auth.lock_model_names(conn, name)
            key = await conn.fetchval(
                """INSERT INTO registered_models
                       (name, description, user_id, creation_timestamp, last_updated_timestamp)
                   VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING RETURNING model_key""",
                name, description, audit.actor, now,
            )  # fmt: skip
            if key is None:
                raise _exists(name)
            tag_map = {t.key: t.value for t in tags}
            await conn.executemany(
                "INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3)",
                [(key, k, v) for k, v in tag_map.items()],
            )
            after = {"name": name, "description": description, "tags": tag_map}
            await events.record(conn, "registered_model.created", name, None, audit, None, after)
            if creator is not None:
                await auth.write_creator_grant(conn, creator, ResourceType.REGISTERED_MODEL, name)
            return (await load_models(conn, [key]))[0]

    async def rename_registered_model(
        self, audit: Audit, name: str, new_name: str
    ) -> RegisteredModel:
        async with self._write(new_name) as conn:
            follow = await self._lock_names_with_grants(conn, name, new_name)
            row = await lock_model(conn, name)
            if new_name != name:
                if await conn.fetchval("SELECT 1 FROM registered_models WHERE name = $1", new_name):
                    raise _exists(new_name)
                if follow:
                    await auth.refuse_rename_onto_grants(
                        conn, name, new_name, auth_on=self._auth_on
                    )
                await conn.execute(
                    "UPDATE registered_models SET name = $2, last_updated_timestamp = $3 WHERE model_key = $1",
                    row["model_key"], new_name, now_ms(),
                )  # fmt: skip
                await events.record(
                    conn,
                    "registered_model.renamed",
                    new_name,
                    None,
                    audit,
                    {"name": name},
                    {"name": new_name},
                )
                if follow:
                    await auth.follow_model_rename(conn, name, new_name)
            return (await load_models(conn, [row["model_key"]]))[0]

    async def update_registered_model(
        self, audit: Audit, name: str, description: str | None
    ) -> RegisteredModel:
        async with self._db.transaction() as conn:
            row = await lock_model(conn, name)
            await conn.execute(
                "UPDATE registered_models SET description = $2, last_updated_timestamp = $3 WHERE model_key = $1",
                row["model_key"], description, now_ms(),
            )  # fmt: skip
            await events.record(
                conn, "registered_model.updated", name, None, audit,
                {"description": row["description"]}, {"description": description},
            )  # fmt: skip
            return (await load_models(conn, [row["model_key"]]))[0]

    async def delete_registered_model(
        self, audit: Audit, name: str, *, audit_log: AuditContext | None = None
    ) -> None:
        async with self._db.transaction() as conn:
            follow = await self._lock_names_with_grants(conn, name)
            row = await lock_model(conn, name)
            key = row["model_key"]
            numbers = [r["version"] for r in await conn.fetch(
                "SELECT version FROM model_versions WHERE model_key = $1 ORDER BY version", key
            )]  # fmt: skip
            tags = {r["key"]: r["value"] for r in await conn.fetch(
                "SELECT key, value FROM registered_model_tags WHERE model_key = $1", key
            )}  # fmt: skip
            aliases = {r["alias"]: r["version"] for r in await conn.fetch(
                "SELECT alias, version FROM registered_model_aliases WHERE model_key = $1", key
            )}  # fmt: skip
            # Versions, tags and aliases go with the model (ON DELETE CASCADE); one event
            # records all of it, so that a subscriber sees one deletion, not dozens.
            await conn.execute("DELETE FROM registered_models WHERE model_key = $1", key)
            before = {
                "name": name,
                "description": row["description"],
                "tags": tags,
                "versions": numbers,
                "aliases": aliases,
            }
            await events.record(conn, "registered_model.deleted", name, None, audit, before, None)
            await auth.audit_deletion(conn, audit_log, "model.deleted", "registered_model", name)
            if follow:
                await auth.drop_model_grants(conn, name)

    async def set_registered_model_tag(self, audit: Audit, name: str, tag: Tag) -> None:
        async with self._db.transaction() as conn:
            key = (await lock_model(conn, name))["model_key"]
            old = await conn.fetchval(
                "SELECT value FROM registered_model_tags WHERE model_key = $1 AND key = $2",
                key,
                tag.key,
            )
            await conn.execute(
                """INSERT INTO registered_model_tags (model_key, key, value) VALUES ($1, $2, $3)
                   ON CONFLICT (model_key, key) DO UPDATE SET value = excluded.value""",
                key, tag.key, tag.value,
            )  # fmt: skip
            before = None if old is None else {"key": tag.key, "value": old}
            await events.record(
                conn,
                "registered_model.tag_set",
                name,
                None,
                audit,
                before,
                {"key": tag.key, "value": tag.value},
            )

    async def delete_registered_model_tag(self, audit: Audit, name: str, tag_key: str) -> None:
        async with self._db.transaction() as conn:
            key = (await lock_model(conn, name))["model_key"]
            old = await conn.fetchval(
                "DELETE FROM registered_model_tags WHERE model_key = $1 AND key = $2 RETURNING value",
                key,
                tag_key,
            )
            if old is None:
                raise NotFound(
                    f"Registered model tag with key '{tag_key}' not found for model '{name}'."
                )
            await events.record(
                conn,
                "registered_model.tag_deleted",
                name,
                None,
                audit,
                {"key": tag_key, "value": old},
                None,
            )

    async def get_registered_model(self, name: str) -> RegisteredModel:
        async with self._db.connection() as conn:
            return (await load_models(conn, [await model_key_of(conn, name)]))[0]

    async def search_registered_models(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        offset = decode_page_token(page_token)
        sql, args = compile_registered_model_search(
            filter_string, order_by, max_results, offset, visibility=visibility
        )
        if visibility.mode is Mode.NONE:
            return Page([], None)
        async with self._db.read_connection() as conn:
            keys = [r["model_key"] for r in await conn.fetch(sql, *args)]
            models = await load_models(conn, keys[:max_results])
        return Page(
            models, encode_page_token(offset + max_results) if len(keys) > max_results else None
        )

    # ------------------------------------------------------------ versions and aliases

    async def create_model_version(
        self,
        audit: Audit,
        name: str,
        source: str,
        run_id: str | None,
        tags: Sequence[Tag],
        run_link: str | None,
        description: str | None,
        model_id: str | None,
    ) -> ModelVersion:
        async with self._db.transaction() as conn:
            return await versions.create(
                conn, audit, name, source, run_id, tags, run_link, description, model_id
            )

    async def update_model_version(
        self, audit: Audit, name: str, version: int, description: str | None
    ) -> ModelVersion:
        async with self._db.transaction() as conn:
            return await versions.update_description(conn, audit, name, version, description)

    async def transition_stage(
        self, audit: Audit, name: str, version: int, stage: str, archive_existing: bool
    ) -> ModelVersion:
        async with self._db.transaction() as conn:
            return await versions.transition(conn, audit, name, version, stage, archive_existing)

    async def delete_model_version(
        self, audit: Audit, name: str, version: int, *, audit_log: AuditContext | None = None
    ) -> None:
        async with self._db.transaction() as conn:
            await versions.delete(conn, audit, name, version)
            await auth.audit_deletion(
                conn, audit_log, "version.deleted", "model_version", f"{name}/{version}",
                {"name": name, "version": version},
            )  # fmt: skip
            await approvals.supersede_deleted_version(conn, audit, name, version)

    async def set_model_version_tag(self, audit: Audit, name: str, version: int, tag: Tag) -> None:
        async with self._db.transaction() as conn:
            await versions.set_tag(conn, audit, name, version, tag)

    async def delete_model_version_tag(
        self, audit: Audit, name: str, version: int, key: str
    ) -> None:
        async with self._db.transaction() as conn:
            await versions.delete_tag(conn, audit, name, version, key)

    async def set_alias(self, audit: Audit, name: str, alias: str, version: int) -> None:
        async with self._db.transaction() as conn:
            await versions.set_alias(conn, audit, name, alias, version)

    async def delete_alias(self, audit: Audit, name: str, alias: str) -> None:
        async with self._db.transaction() as conn:
            await versions.delete_alias(conn, audit, name, alias)

    async def owner_artifact_location(self, field: str, ident: str) -> str | None:
        """Artifact location of the run (``field`` = ``run_id``) or active logged model
        (``model_id``) a model-version source must lie in; None when there is no such resource.
        The registry service checks the source against it before create_model_version runs."""
        sql = (
            "SELECT artifact_uri FROM runs WHERE run_id = $1"
            if field == "run_id"
            else "SELECT artifact_location FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active'"
        )
        async with self._db.connection() as conn:
            location = await conn.fetchval(sql, ident)
        return None if location is None else str(location)

    async def get_model_version(self, name: str, version: int) -> ModelVersion:
        async with self._db.connection() as conn:
            found = await load_versions(conn, [(await model_key_of(conn, name), version)])
        if not found:
            raise version_not_found(name, version)
        return found[0]

    async def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        async with self._db.connection() as conn:
            key = await model_key_of(conn, name)
            version = await conn.fetchval(
                "SELECT version FROM registered_model_aliases WHERE model_key = $1 AND alias = $2",
                key,
                alias,
            )
            if version is None:
                raise alias_not_found(name, alias)
            return await load_version(conn, key, version)

    async def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        async with self._db.connection() as conn:
            key = await model_key_of(conn, name)
            return await load_versions(conn, await latest_version_keys(conn, [key], stages))

    async def search_model_versions(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        offset = decode_page_token(page_token)
        sql, args = compile_model_version_search(
            filter_string, order_by, max_results, offset, visibility=visibility
        )
        if visibility.mode is Mode.NONE:
            return Page([], None)
        async with self._db.read_connection() as conn:
            keys = [(r["model_key"], r["version"]) for r in await conn.fetch(sql, *args)]
            found = await load_versions(conn, keys[:max_results])
        return Page(
            found, encode_page_token(offset + max_results) if len(keys) > max_results else None
        )

    async def history(
        self, name: str, version: int | None, max_results: int, page_token: str | None
    ) -> tuple[list[RegistryEvent], str | None]:
        async with self._db.read_connection() as conn:
            return await events.history(conn, name, version, max_results, page_token)
