"""Topics: what a subscriber wants (DESIGN.md "Words" -> topic; issue 5 item 7).

Topics come from ``OTAYORI_TOPICS`` (``slug:label``, validated at load). A subscriber's choice is a list of slugs in
``subscriber.topics``; none chosen (None or ``[]``) means every topic. An issue targets one topic or every topic, and
reaches the subscribers who chose it or chose none (the rule is SQL: :func:`core.eligibility.wants_topic`). Each
change of choice is a ``topics`` event in the consent ledger (appended by the subscription use cases).

Pure functions over settings; the chat flow is in :mod:`core.subscriptions`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from core import texts
from core.settings import ALL_TOPICS, Settings
from core.texts import Language, ReasonError

#: Button data of a topic button: ``topic:<slug>`` toggles that topic, ``topic:*`` chooses every topic.
TOPIC_BUTTON_PREFIX = "topic:"
ALL_TOPICS_DATA = f"{TOPIC_BUTTON_PREFIX}*"
#: Words that mean "every topic" where a topic is named (the CLI's ``--topic``, a chat argument).
_ALL_WORDS = frozenset({ALL_TOPICS, "*", "すべて", "全部", "ぜんぶ", "全て"})


def _key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def resolve_topic(settings: Settings, given: str | None) -> str | None:
    """The slug ``given`` names — a slug or a label, in any width or case — or None for every topic (``None``,
    empty, ``all``, ``すべて``). Raises :class:`core.texts.ReasonError` ``unknown_topic`` listing the choices."""
    if given is None or not given.strip() or _key(given) in _ALL_WORDS:
        return None
    wanted = _key(given)
    for slug, label in settings.topic_labels.items():
        if wanted in (_key(slug), _key(label)):
            return slug
    choices = ", ".join(f"{slug} ({label})" for slug, label in settings.topic_labels.items())
    raise ReasonError("unknown_topic", given=given.strip(), choices=f"{choices}, {ALL_TOPICS}")


def normalise_choice(settings: Settings, chosen: Iterable[str] | None) -> list[str] | None:
    """A choice as stored: the configured slugs among ``chosen``, in the configured order, or None when none is
    left (= every topic). Slugs no longer configured are dropped."""
    wanted = set(chosen or ())
    kept = [slug for slug in settings.topic_labels if slug in wanted]
    return kept or None


def toggled(settings: Settings, current: Iterable[str] | None, slug: str | None) -> list[str] | None:
    """The choice after pressing the button of ``slug`` (None: the "every topic" button).

    From "every topic", pressing a topic chooses only that topic; pressing a chosen topic removes it (none left =
    every topic again); pressing another adds it.
    """
    if slug is None:
        return None
    base = normalise_choice(settings, current) or []
    return normalise_choice(settings, [s for s in base if s != slug] if slug in base else [*base, slug])


def describe(settings: Settings, chosen: Iterable[str] | None, language: Language) -> str:
    """The choice in words: the labels joined with 、, or "すべて" / "all"."""
    kept = normalise_choice(settings, chosen)
    if kept is None:
        return texts.text("topics_all", language)
    return "、".join(settings.topic_labels[slug] for slug in kept)


def button_labels(settings: Settings, chosen: Iterable[str] | None, language: Language) -> list[tuple[str, str]]:
    """``(label, data)`` of the topic buttons: one per topic, then "every topic"; the current choice is marked with
    :data:`core.texts.TOPIC_CHOSEN_MARK`. Labels stay within LINE's 20 characters (labels are <= 18 at load)."""
    kept = normalise_choice(settings, chosen)
    buttons = [
        ((texts.TOPIC_CHOSEN_MARK if kept and slug in kept else "") + label, f"{TOPIC_BUTTON_PREFIX}{slug}")
        for slug, label in settings.topic_labels.items()
    ]
    every = texts.TOPICS_ALL_BUTTON[language]
    buttons.append(((texts.TOPIC_CHOSEN_MARK if kept is None else "") + every, ALL_TOPICS_DATA))
    return buttons


def slug_of_button(settings: Settings, data: str) -> tuple[bool, str | None]:
    """``(known, slug)`` for topic button ``data``: ``(True, None)`` for "every topic", ``(True, slug)`` for a
    configured topic, ``(False, None)`` for a topic no longer configured (an old button)."""
    value = data.removeprefix(TOPIC_BUTTON_PREFIX)
    if data == ALL_TOPICS_DATA:
        return True, None
    return (value in settings.topic_labels, value if value in settings.topic_labels else None)
