"""Who may be sent the newsletter: the consent rule, written once as SQL and used everywhere.

An endpoint may receive an issue when (DESIGN.md "Delivery", "Consent export" audit rule; 特定電子メール法 Art. 3(1)):

* its state is ``active`` and its legal basis is ``opt_in`` (other bases never allow the newsletter);
* its latest consent event other than ``topics`` is ``grant`` (LINE, Telegram: chat consent) or ``confirm`` (email:
  double opt-in completed).

The rule lives inside the queries (listmonk's way): the broadcast's ``INSERT … SELECT``, the dispatcher's re-check
just before each attempt, and the audit all use :func:`consented_clause`.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, select

from storage.models import Basis, Channel, ConsentAction, ConsentEvent, Endpoint, EndpointState


def latest_consent_action(endpoint_id_column: ColumnElement[int]):  # type: ignore[no-untyped-def]
    """Scalar subquery: the action of the endpoint's latest ledger event other than ``topics`` (or NULL)."""
    return (
        select(ConsentEvent.action)
        .where(ConsentEvent.endpoint_id == endpoint_id_column, ConsentEvent.action != ConsentAction.TOPICS.value)
        .order_by(ConsentEvent.id.desc())  # type: ignore[union-attr]
        .limit(1)
        .scalar_subquery()
    )


def required_action(channel_column: ColumnElement[str]):  # type: ignore[no-untyped-def]
    """SQL expression: the consent action a channel needs (``confirm`` for email, ``grant`` for chat)."""
    return case(
        (channel_column == Channel.EMAIL.value, ConsentAction.CONFIRM.value),
        else_=ConsentAction.GRANT.value,
    )


def consented_clause() -> ColumnElement[bool]:
    """WHERE clause over :class:`Endpoint`: active, ``opt_in``, and the latest consent action is the required one."""
    return and_(
        Endpoint.state == EndpointState.ACTIVE.value,
        Endpoint.basis == Basis.OPT_IN.value,
        Endpoint.address.is_not(None),  # type: ignore[union-attr]
        latest_consent_action(Endpoint.id) == required_action(Endpoint.channel),  # type: ignore[arg-type]
    )

