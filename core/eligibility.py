"""Who may be sent the newsletter: the consent rule, written once as SQL and used everywhere.

An endpoint may receive an issue when (DESIGN.md "Delivery", "Consent export" audit rule; 特定電子メール法 Art. 3(1)):

* its state is ``active`` and its legal basis is ``opt_in`` (other bases never allow the newsletter);
* its latest consent event other than ``topics`` is ``grant`` (LINE, Telegram: chat consent) or ``confirm`` (email:
  double opt-in completed);
* the issue targets every topic, or its subscriber chose no topic (= every topic), or chose the issue's topic
  (DESIGN.md "Words" -> topic; issue 5 item 7).

The rule lives inside the queries (listmonk's way): the broadcast's ``INSERT … SELECT``, the dispatcher's re-check
just before each attempt, and the audit all use :func:`consented_clause`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, literal, or_, select, true

from storage.json_lists import json_list_wants
from storage.models import (
    Basis,
    Channel,
    ConsentAction,
    ConsentEvent,
    Delivery,
    Endpoint,
    EndpointState,
    Issue,
    Subscriber,
)


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


def delivery_topic() -> ColumnElement[Any]:
    """Scalar subquery: the topic of the issue of the :class:`Delivery` row the enclosing statement is about (NULL =
    every topic). For the dispatcher's re-check, which runs inside ``UPDATE delivery …``.

    Correlated explicitly: it sits two subqueries below that statement, and SQLAlchemy's automatic correlation
    reaches only the immediately enclosing SELECT (else ``delivery`` would join in afresh and pick any issue).
    """
    return select(Issue.topic).where(Issue.id == Delivery.issue_id).correlate(Delivery).scalar_subquery()


def wants_topic(topic: str | ColumnElement[Any] | None) -> ColumnElement[bool]:
    """WHERE clause over :class:`Endpoint`: its subscriber wants ``topic``.

    ``topic``: a slug, ``None`` (the issue targets everyone: always true), or a SQL expression such as
    :func:`delivery_topic` (true when it is NULL). A subscriber who chose no topic wants every topic.
    """
    if topic is None:
        return true()
    value = literal(topic, String()) if isinstance(topic, str) else topic
    chosen = select(Subscriber.id).where(
        Subscriber.id == Endpoint.subscriber_id, json_list_wants(Subscriber.topics, value)  # type: ignore[arg-type]
    ).exists()
    return chosen if isinstance(topic, str) else or_(topic.is_(None), chosen)


def consented_clause(topic: str | ColumnElement[Any] | None) -> ColumnElement[bool]:
    """WHERE clause over :class:`Endpoint`: active, ``opt_in``, the latest consent action is the required one, and
    the subscriber wants ``topic`` (see :func:`wants_topic`; ``None`` = an issue for every topic).

    ``topic`` has no default on purpose: every caller says which issue topic it checks (the dispatcher passes
    :func:`delivery_topic`), so a query cannot silently forget the topic filter.
    """
    return and_(
        Endpoint.state == EndpointState.ACTIVE.value,
        Endpoint.basis == Basis.OPT_IN.value,
        Endpoint.address.is_not(None),  # type: ignore[union-attr]
        latest_consent_action(Endpoint.id) == required_action(Endpoint.channel),  # type: ignore[arg-type]
        wants_topic(topic),
    )
