"""Request-body validation of the LINE Messaging API, as the LINE emulator applies it.

Limits come from the Messaging API reference (https://developers.line.biz/en/reference/messaging-api/ —
"Message objects", "Quick reply", "Action objects", "Template messages") and /work/shared/reference/line.md.
Every length is counted in UTF-16 code units, as LINE counts "characters": an emoji outside the BMP (😀) counts 2.

The error shape is the one LINE returns for an invalid body (HTTP 400)::

    {"message": "The request body has 2 error(s)",
     "details": [{"message": "May not be empty", "property": "messages[0].text"}, ...]}

The wording of the detail messages ("May not be empty", "Size must be between 1 and 500", "Length must be between
0 and 5000") follows what LINE is seen to answer; LINE does not document every string, so code must branch on the HTTP
status and ``property``, never on the detail text.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

MAX_MESSAGES_PER_REQUEST = 5
MAX_MULTICAST_RECIPIENTS = 500
MAX_TEXT_UNITS = 5000
MAX_QUICK_REPLY_ITEMS = 13
MAX_ACTION_LABEL_UNITS = 20
MAX_POSTBACK_DATA_UNITS = 300
MAX_ACTION_TEXT_UNITS = 300
MAX_URI_UNITS = 1000
MAX_MEDIA_URL_UNITS = 2000
MAX_ALT_TEXT_UNITS = 400
MAX_CONFIRM_TEXT_UNITS = 240
MAX_BUTTONS_TEXT_UNITS = 160
MAX_BUTTONS_ACTIONS = 4

MESSAGE_TYPES = ("text", "image", "video", "audio", "location", "sticker", "template", "imagemap", "flex")
ACTION_TYPES = ("postback", "message", "uri", "datetimepicker", "camera", "cameraRoll", "location", "richmenuswitch",
                "clipboard")

Detail = dict[str, str]


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (how LINE counts characters): 'あ' is 1, '😀' is 2."""
    return len(text.encode("utf-16-le")) // 2


def body_errors(details: list[Detail]) -> dict[str, Any]:
    """The JSON body LINE answers with HTTP 400 for ``details`` (a non-empty list of ``{message, property}``)."""
    return {"message": f"The request body has {len(details)} error(s)", "details": details}


def _must_be_specified(prop: str) -> Detail:
    return {"message": "must be specified", "property": prop}


def _check_text(value: Any, prop: str, max_units: int, details: list[Detail], *, required: bool = True,
                allow_empty: bool = False) -> None:
    """Append a detail when ``value`` is missing, not a string, empty, or longer than ``max_units`` UTF-16 units."""
    if value is None:
        if required:
            details.append(_must_be_specified(prop))
        return
    if not isinstance(value, str):
        details.append({"message": "Must be a string", "property": prop})
        return
    if value == "" and not allow_empty:
        details.append({"message": "May not be empty", "property": prop})
        return
    if utf16_len(value) > max_units:
        details.append({"message": f"Length must be between 0 and {max_units}", "property": prop})


def _check_https_url(value: Any, prop: str, details: list[Detail]) -> None:
    """A media URL LINE fetches itself ("Image message": HTTPS, at most 2,000 characters): a detail when it is
    missing, too long, or not an absolute ``https://`` URL (LINE answers "invalid uri scheme" for ``http://``)."""
    before = len(details)
    _check_text(value, prop, MAX_MEDIA_URL_UNITS, details)
    if len(details) > before:
        return
    parts = urlsplit(value)
    if parts.scheme.lower() != "https" or not parts.netloc:
        details.append({"message": "invalid uri scheme", "property": prop})


def _check_size(value: Any, prop: str, low: int, high: int, details: list[Detail]) -> bool:
    """Append a detail unless ``value`` is a list of ``low..high`` items; True when the list is usable."""
    if value is None:
        details.append(_must_be_specified(prop))
        return False
    if not isinstance(value, list):
        details.append({"message": "Must be an array", "property": prop})
        return False
    if not low <= len(value) <= high:
        details.append({"message": f"Size must be between {low} and {high}", "property": prop})
        return False
    return True


def validate_action(action: Any, prop: str, details: list[Detail], *, label_required: bool) -> None:
    """Check one action object (https://developers.line.biz/en/reference/messaging-api/#action-objects)."""
    if not isinstance(action, dict):
        details.append(_must_be_specified(prop))
        return
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        details.append({"message": f"Must be one of the following values: [{', '.join(ACTION_TYPES)}]",
                        "property": f"{prop}.type"})
        return
    _check_text(action.get("label"), f"{prop}.label", MAX_ACTION_LABEL_UNITS, details, required=label_required)
    if kind == "postback":
        _check_text(action.get("data"), f"{prop}.data", MAX_POSTBACK_DATA_UNITS, details, allow_empty=True)
        _check_text(action.get("displayText"), f"{prop}.displayText", MAX_ACTION_TEXT_UNITS, details, required=False)
        _check_text(action.get("text"), f"{prop}.text", MAX_ACTION_TEXT_UNITS, details, required=False)
    elif kind == "message":
        _check_text(action.get("text"), f"{prop}.text", MAX_ACTION_TEXT_UNITS, details)
    elif kind == "uri":
        _check_text(action.get("uri"), f"{prop}.uri", MAX_URI_UNITS, details)


def _validate_quick_reply(quick_reply: Any, prop: str, details: list[Detail]) -> None:
    if not isinstance(quick_reply, dict):
        details.append({"message": "Must be an object", "property": prop})
        return
    items = quick_reply.get("items")
    if not _check_size(items, f"{prop}.items", 1, MAX_QUICK_REPLY_ITEMS, details):
        return
    for i, item in enumerate(items):
        item_prop = f"{prop}.items[{i}]"
        if not isinstance(item, dict) or item.get("type", "action") != "action":
            details.append({"message": "Must be one of the following values: [action]",
                            "property": f"{item_prop}.type"})
            continue
        # Quick reply buttons always show a label, so it is required there (reference: "Quick reply > items").
        validate_action(item.get("action"), f"{item_prop}.action", details, label_required=True)


def _validate_template(template: Any, prop: str, details: list[Detail]) -> None:
    if not isinstance(template, dict):
        details.append(_must_be_specified(prop))
        return
    kind = template.get("type")
    if kind == "confirm":
        _check_text(template.get("text"), f"{prop}.text", MAX_CONFIRM_TEXT_UNITS, details)
        actions = template.get("actions")
        if _check_size(actions, f"{prop}.actions", 2, 2, details):
            for i, action in enumerate(actions):
                validate_action(action, f"{prop}.actions[{i}]", details, label_required=True)
    elif kind == "buttons":
        _check_text(template.get("text"), f"{prop}.text", MAX_BUTTONS_TEXT_UNITS, details)
        actions = template.get("actions")
        if _check_size(actions, f"{prop}.actions", 1, MAX_BUTTONS_ACTIONS, details):
            for i, action in enumerate(actions):
                validate_action(action, f"{prop}.actions[{i}]", details, label_required=True)
    elif kind in ("carousel", "image_carousel"):
        _check_size(template.get("columns"), f"{prop}.columns", 1, 10, details)
    else:
        details.append({"message": "Must be one of the following values: [buttons, confirm, carousel, image_carousel]",
                        "property": f"{prop}.type"})


def validate_message(message: Any, prop: str, details: list[Detail]) -> None:
    """Check one message object; appends ``{message, property}`` details for each problem found."""
    if not isinstance(message, dict):
        details.append(_must_be_specified(prop))
        return
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        details.append({"message": f"Must be one of the following values: [{', '.join(MESSAGE_TYPES)}]",
                        "property": f"{prop}.type"})
        return
    if kind == "text":
        _check_text(message.get("text"), f"{prop}.text", MAX_TEXT_UNITS, details)
    elif kind == "sticker":
        for key in ("packageId", "stickerId"):
            _check_text(message.get(key), f"{prop}.{key}", 100, details)
    elif kind in ("image", "video"):
        for key in ("originalContentUrl", "previewImageUrl"):
            _check_https_url(message.get(key), f"{prop}.{key}", details)
    elif kind == "audio":
        _check_https_url(message.get("originalContentUrl"), f"{prop}.originalContentUrl", details)
    elif kind == "template":
        _check_text(message.get("altText"), f"{prop}.altText", MAX_ALT_TEXT_UNITS, details)
        _validate_template(message.get("template"), f"{prop}.template", details)
    elif kind == "flex":
        _check_text(message.get("altText"), f"{prop}.altText", MAX_ALT_TEXT_UNITS, details)
        if not isinstance(message.get("contents"), dict):
            details.append(_must_be_specified(f"{prop}.contents"))
    if "quickReply" in message and message["quickReply"] is not None:
        _validate_quick_reply(message["quickReply"], f"{prop}.quickReply", details)


def validate_messages(messages: Any, details: list[Detail]) -> None:
    """Check a request's ``messages`` array: 1..5 message objects, each valid."""
    if not _check_size(messages, "messages", 1, MAX_MESSAGES_PER_REQUEST, details):
        return
    for i, message in enumerate(messages):
        validate_message(message, f"messages[{i}]", details)


# ---- rich menus (https://developers.line.biz/en/reference/messaging-api/#rich-menu-object) --------------------------

RICH_MENU_MIN_WIDTH, RICH_MENU_MAX_WIDTH = 800, 2500
RICH_MENU_MIN_HEIGHT, RICH_MENU_MAX_HEIGHT = 250, 1686
RICH_MENU_MIN_ASPECT = 1.45
"""A rich menu (and its image) is 800..2500 px wide, 250..1686 px high, and at least 1.45 times as wide as high."""
MAX_RICH_MENU_AREAS = 20
MAX_RICH_MENU_NAME_UNITS = 300
MAX_CHAT_BAR_TEXT_UNITS = 14
RICH_MENU_ACTION_TYPES = ("postback", "message", "uri", "datetimepicker", "richmenuswitch", "clipboard")
"""Quick-reply-only actions (camera, cameraRoll, location) cannot be a rich menu area's."""


def rich_menu_size_problem(width: int, height: int) -> str | None:
    """Why ``width`` x ``height`` pixels cannot be a rich menu (or its image), or None when it can."""
    if not RICH_MENU_MIN_WIDTH <= width <= RICH_MENU_MAX_WIDTH:
        return f"width must be between {RICH_MENU_MIN_WIDTH} and {RICH_MENU_MAX_WIDTH}"
    if not RICH_MENU_MIN_HEIGHT <= height <= RICH_MENU_MAX_HEIGHT:
        return f"height must be between {RICH_MENU_MIN_HEIGHT} and {RICH_MENU_MAX_HEIGHT}"
    if width / height < RICH_MENU_MIN_ASPECT:
        return f"aspect ratio (width / height) must be at least {RICH_MENU_MIN_ASPECT}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_rich_menu(body: Any, details: list[Detail]) -> None:
    """Check a ``POST /v2/bot/richmenu`` body: size, selected, name, chatBarText, and at most 20 areas whose bounds
    lie within the size and whose actions are rich-menu actions."""
    if not isinstance(body, dict):
        details.append(_must_be_specified("richMenu"))
        return
    size = body.get("size")
    width = height = None
    if not isinstance(size, dict) or not _is_int(size.get("width")) or not _is_int(size.get("height")):
        details.append(_must_be_specified("size"))
    else:
        width, height = size["width"], size["height"]
        problem = rich_menu_size_problem(width, height)
        if problem:
            details.append({"message": problem, "property": "size"})
    if not isinstance(body.get("selected"), bool):
        details.append(_must_be_specified("selected"))
    _check_text(body.get("name"), "name", MAX_RICH_MENU_NAME_UNITS, details)
    _check_text(body.get("chatBarText"), "chatBarText", MAX_CHAT_BAR_TEXT_UNITS, details)
    areas = body.get("areas")
    if not _check_size(areas, "areas", 0, MAX_RICH_MENU_AREAS, details):
        return
    for i, area in enumerate(areas):
        prop = f"areas[{i}]"
        bounds = area.get("bounds") if isinstance(area, dict) else None
        keys = ("x", "y", "width", "height")
        if not isinstance(bounds, dict) or not all(_is_int(bounds.get(k)) and bounds[k] >= 0 for k in keys):
            details.append(_must_be_specified(f"{prop}.bounds"))
        elif width is not None and height is not None and (
                bounds["width"] == 0 or bounds["height"] == 0
                or bounds["x"] + bounds["width"] > width or bounds["y"] + bounds["height"] > height):
            details.append({"message": "bounds must lie within the rich menu's size", "property": f"{prop}.bounds"})
        action = area.get("action") if isinstance(area, dict) else None
        if isinstance(action, dict) and action.get("type") not in RICH_MENU_ACTION_TYPES:
            details.append({"message": f"Must be one of the following values: [{', '.join(RICH_MENU_ACTION_TYPES)}]",
                            "property": f"{prop}.action.type"})
        else:
            validate_action(action, f"{prop}.action", details, label_required=False)
