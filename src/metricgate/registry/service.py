"""The registry service: validation plus THE choke point every registry write goes through.

Handlers never call the store's write methods directly. Each mutation goes through
``RegistryService._apply``. Approval policies (docs/design-auth.md B6: "promotions to Production
need two approvers") gate the two changes they can govern, stage transitions and alias sets: with
access control on (a verified actor) those run through the approval store, which looks the policy
up in the change's own transaction and either makes the change exactly as without approvals or
records a pending request, answered here as ``ApprovalPending`` (409 RESOURCE_CONFLICT).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.registry import rules
from metricgate.domain.registry.approvals import ApprovalPending, ApprovalRequest
from metricgate.domain.registry.entities import (
    PROMPT_TAG,
    Audit,
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
)
from metricgate.domain.tracking.entities import Page, Tag
from metricgate.stores.base import ApprovalStore, AuditContext, RegistryStore

T = TypeVar("T")


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        allowed_source_schemes: frozenset[str] = frozenset(),
        approvals: ApprovalStore | None = None,
    ) -> None:
        """``allowed_source_schemes``: host-addressed schemes (``https``, ``ftp``, ...) a
        model-version source may use anyway, as stock's MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES.
        ``approvals``: the approval store, given when access control is on (None: no policies)."""
        self._store = store
        self._allowed_source_schemes = frozenset(s.lower() for s in allowed_source_schemes)
        self._approvals = approvals

    @property
    def approvals(self) -> ApprovalStore | None:
        """Policies, requests and votes (api/approvals.py); None when access control is off."""
        return self._approvals

    def _gate(self, audit: Audit) -> ApprovalStore | None:
        """The approval store when policies can apply: only a verified actor can request."""
        return self._approvals if audit.actor_verified else None

    async def _apply(self, action: str, audit: Audit, change: Callable[[], Awaitable[T]]) -> T:
        """Run one registry mutation. ``action`` names it (e.g. ``model_version.transition``).

        Approval policies are checked inside ``change`` for the actions they govern
        (``model_version.transition``, ``alias.set``: see ``_gate``), because the policy must be
        read in the transaction that makes the change. With access control off ``audit.actor``
        is only what the client claims (``audit.actor_verified`` is false): decide nothing on it.
        """
        del action  # no policy yet; see the docstring
        return await change()

    # ------------------------------------------------------------ registered models

    async def create_registered_model(
        self,
        audit: Audit,
        name: str | None,
        tags: Sequence[Tag],
        description: str | None,
        creator: int | None = None,
    ) -> RegisteredModel:
        """``creator``: the user id that gets MANAGE on the model in the create's transaction."""
        checked = rules.validate_model_name(name)
        tags = [rules.validate_tag(t) for t in tags]
        rules.validate_description(description)
        return await self._apply(
            "registered_model.create", audit,
            lambda: self._store.create_registered_model(audit, checked, tags, description, creator),
        )  # fmt: skip

    async def rename_registered_model(
        self, audit: Audit, name: str | None, new_name: str | None
    ) -> RegisteredModel:
        old = rules.validate_model_name(name)
        new = rules.validate_model_name(new_name, "new_name")
        return await self._apply(
            "registered_model.rename",
            audit,
            lambda: self._store.rename_registered_model(audit, old, new),
        )

    async def update_registered_model(
        self, audit: Audit, name: str | None, description: str | None
    ) -> RegisteredModel:
        checked = rules.validate_model_name(name)
        rules.validate_description(description)
        return await self._apply(
            "registered_model.update", audit,
            lambda: self._store.update_registered_model(audit, checked, description),
        )  # fmt: skip

    async def delete_registered_model(
        self, audit: Audit, name: str | None, *, audit_log: AuditContext | None = None
    ) -> None:
        checked = rules.validate_model_name(name)
        await self._apply(
            "registered_model.delete",
            audit,
            lambda: self._store.delete_registered_model(audit, checked, audit_log=audit_log),
        )

    async def set_registered_model_tag(self, audit: Audit, name: str | None, tag: Tag) -> None:
        checked = rules.validate_model_name(name)
        rules.validate_tag(tag)
        await self._apply(
            "registered_model.set_tag",
            audit,
            lambda: self._store.set_registered_model_tag(audit, checked, tag),
        )

    async def delete_registered_model_tag(
        self, audit: Audit, name: str | None, key: str | None
    ) -> None:
        checked = rules.validate_model_name(name)
        key = rules.required(key, "key")
        await self._apply(
            "registered_model.delete_tag", audit,
            lambda: self._store.delete_registered_model_tag(audit, checked, key),
        )  # fmt: skip

    async def set_alias(
        self, audit: Audit, name: str | None, alias: str | None, version: str | None
    ) -> None:
        checked = rules.validate_model_name(name)
        checked_alias = rules.validate_alias(alias)
        number = rules.parse_version(version)
        gate = self._gate(audit)
        if gate is None:
            await self._apply(
                "alias.set",
                audit,
                lambda: self._store.set_alias(audit, checked, checked_alias, number),
            )
            return
        pending = await self._apply(
            "alias.set",
            audit,
            lambda: gate.set_alias_or_request(audit, checked, checked_alias, number),
        )
        if pending is not None:
            raise ApprovalPending(pending, pending.policy_id or 0)

    async def delete_alias(self, audit: Audit, name: str | None, alias: str | None) -> None:
        checked = rules.validate_model_name(name)
        alias = rules.required(alias, "alias")
        await self._apply(
            "alias.delete", audit, lambda: self._store.delete_alias(audit, checked, alias)
        )

    # ------------------------------------------------------------ model versions

    async def create_model_version(
        self,
        audit: Audit,
        name: str | None,
        source: str | None,
        run_id: str | None,
        tags: Sequence[Tag],
        run_link: str | None,
        description: str | None,
        model_id: str | None,
    ) -> ModelVersion:
        checked = rules.validate_model_name(name)
        checked_source = rules.validate_source(source)
        tags = [rules.validate_tag(t) for t in tags]
        rules.validate_description(description)
        rules.reject_host_addressed_source(checked_source, self._allowed_source_schemes)
        checked_source, run_id, model_id = await self._resolve_lineage(
            checked_source, run_id, model_id
        )
        await self._check_source(checked_source, run_id, model_id)
        return await self._apply(
            "model_version.create", audit,
            lambda: self._store.create_model_version(
                audit, checked, checked_source, run_id, tags, run_link, description, model_id
            ),
        )  # fmt: skip

    async def _resolve_lineage(
        self, source: str, run_id: str | None, model_id: str | None
    ) -> tuple[str, str | None, str | None]:
        """Stock 3.17.2's ``_resolve_registered_model_source_lineage``: a ``models:/<name>/<version>``
        (``/<stage>``, ``/latest``, ``@<alias>``) source names an existing version of a model that is
        not a prompt; it is stored as ``models:/<name>/<version>``, and the request's run_id and
        model_id must be that version's, or are taken from it when not given. (The API reads an
        empty id as not given, where stock compares it.) ``models:/<model_id>`` passes unchanged."""
        parsed = rules.parse_models_source(source)
        if parsed is None or parsed.model_id is not None:
            return source, run_id, model_id
        name = rules.validate_model_name(parsed.name)
        model = await self._store.get_registered_model(name)  # 404 when there is no such model
        if any(t.key == PROMPT_TAG and t.value.lower() == "true" for t in model.tags):
            raise rules.prompt_source(source)
        if parsed.version is not None:
            version = await self._store.get_model_version(name, rules.parse_version(parsed.version))
        elif parsed.alias is not None:
            version = await self._store.get_version_by_alias(name, parsed.alias)
        else:
            stages = [] if parsed.stage is None else [rules.canonical_stage(parsed.stage)]
            latest = await self._store.get_latest_versions(name, stages)
            if not latest:
                # Stock raises this without an error code: a 500. Nothing to copy is a 404 here.
                in_stage = "" if parsed.stage is None else f" and stage '{parsed.stage}'"
                raise NotFound(f"No versions of model with name '{name}'{in_stage} found")
            version = max(latest, key=lambda v: v.version)
        rules.check_lineage(source, run_id, model_id, version.run_id, version.model_id)
        return (
            f"models:/{name}/{version.version}",
            run_id or version.run_id,
            model_id or version.model_id,
        )

    async def _check_source(self, source: str, run_id: str | None, model_id: str | None) -> None:
        """Stock MLflow's source rules (domain/registry/rules.py), before anything is stored: a source
        that climbs out of its location, or a local / proxied one that is not inside the
        artifact location of the run or logged model the request names, is a client error."""
        owner = rules.source_owner(source, run_id, model_id)
        if owner is not None:
            location = await self._store.owner_artifact_location(owner.field, owner.ident)
            rules.check_source_within(source, owner, location)

    async def update_model_version(
        self, audit: Audit, name: str | None, version: str | None, description: str | None
    ) -> ModelVersion:
        checked, number = rules.validate_model_name(name), rules.parse_version(version)
        rules.validate_description(description)
        return await self._apply(
            "model_version.update", audit,
            lambda: self._store.update_model_version(audit, checked, number, description),
        )  # fmt: skip

    async def transition_stage(
        self,
        audit: Audit,
        name: str | None,
        version: str | None,
        stage: str | None,
        archive_existing: bool,
    ) -> ModelVersion:
        checked, number = rules.validate_model_name(name), rules.parse_version(version)
        target = rules.canonical_stage(stage)
        if archive_existing and target not in rules.ARCHIVING_STAGES:
            raise InvalidParameter(
                f"Model version transition cannot archive existing model versions because "
                f"'{target}' is not an Active stage. Valid stages are {', '.join(rules.ARCHIVING_STAGES)}."
            )
        gate = self._gate(audit)
        if gate is None:
            return await self._apply(
                "model_version.transition", audit,
                lambda: self._store.transition_stage(audit, checked, number, target, archive_existing),
            )  # fmt: skip
        outcome = await self._apply(
            "model_version.transition", audit,
            lambda: gate.transition_or_request(audit, checked, number, target, archive_existing),
        )  # fmt: skip
        if isinstance(outcome, ApprovalRequest):
            raise ApprovalPending(outcome, outcome.policy_id or 0)
        return outcome

    async def delete_model_version(
        self,
        audit: Audit,
        name: str | None,
        version: str | None,
        *,
        audit_log: AuditContext | None = None,
    ) -> None:
        checked, number = rules.validate_model_name(name), rules.parse_version(version)
        await self._apply(
            "model_version.delete",
            audit,
            lambda: self._store.delete_model_version(audit, checked, number, audit_log=audit_log),
        )

    async def set_model_version_tag(
        self, audit: Audit, name: str | None, version: str | None, tag: Tag
    ) -> None:
        checked, number = rules.validate_model_name(name), rules.parse_version(version)
        rules.validate_tag(tag)
        await self._apply(
            "model_version.set_tag", audit,
            lambda: self._store.set_model_version_tag(audit, checked, number, tag),
        )  # fmt: skip

    async def delete_model_version_tag(
        self, audit: Audit, name: str | None, version: str | None, key: str | None
    ) -> None:
        checked, number = rules.validate_model_name(name), rules.parse_version(version)
        key = rules.required(key, "key")
        await self._apply(
            "model_version.delete_tag", audit,
            lambda: self._store.delete_model_version_tag(audit, checked, number, key),
        )  # fmt: skip

    # ------------------------------------------------------------ reads (no choke point needed)

    async def get_registered_model(self, name: str | None) -> RegisteredModel:
        return await self._store.get_registered_model(rules.validate_model_name(name))

    async def search_registered_models(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        return await self._store.search_registered_models(
            filter_string, order_by, max_results, page_token, visibility=visibility
        )

    async def get_latest_versions(
        self, name: str | None, stages: Sequence[str]
    ) -> list[ModelVersion]:
        checked = rules.validate_model_name(name)
        return await self._store.get_latest_versions(
            checked, [rules.canonical_stage(s) for s in stages]
        )

    async def get_model_version(self, name: str | None, version: str | None) -> ModelVersion:
        return await self._store.get_model_version(
            rules.validate_model_name(name), rules.parse_version(version)
        )

    async def get_version_by_alias(self, name: str | None, alias: str | None) -> ModelVersion:
        checked = rules.validate_model_name(name)
        alias = rules.required(alias, "alias")
        return await self._store.get_version_by_alias(checked, alias)

    async def search_model_versions(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        return await self._store.search_model_versions(
            filter_string, order_by, max_results, page_token, visibility=visibility
        )

    async def history(
        self, name: str | None, version: str | None, max_results: int, page_token: str | None
    ) -> tuple[list[RegistryEvent], str | None]:
        checked = rules.validate_model_name(name)
        number = rules.parse_version(version) if version else None
        return await self._store.history(checked, number, max_results, page_token)
