"""Bot API wire format for the Telegram emulator: method names, error answers, request parameters.

Requests (https://core.telegram.org/bots/api#making-requests) carry parameters in the query string and/or an
``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``application/json`` body. python-telegram-bot sends
forms: strings as-is, every other value JSON-encoded (``"true"``, ``"123"``, ``'{"inline_keyboard": ...}'``), files as
multipart parts named after the parameter. The converters here read both shapes and are as lenient as the real server
(a non-numeric integer reads as 0).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from bots.sandbox.telegram_records import UploadedFile

__all__ = [
    "BOT_API_METHODS",
    "ApiError",
    "json_response",
    "read_params",
    "summarise",
    "to_bool",
    "to_float",
    "to_int",
    "to_json",
    "to_str",
]

# Every Bot API method (Bot API 9.x, as python-telegram-bot 22.8 calls them). Lower-cased name -> canonical name,
# because the real server matches method names case-insensitively.
BOT_API_METHODS = {
    name.lower(): name
    for name in """
    addStickerToSet answerCallbackQuery answerGuestQuery answerInlineQuery answerPreCheckoutQuery answerShippingQuery
    answerWebAppQuery approveChatJoinRequest approveSuggestedPost banChatMember banChatSenderChat close closeForumTopic
    closeGeneralForumTopic convertGiftToStars copyMessage copyMessages createChatInviteLink
    createChatSubscriptionInviteLink createForumTopic createInvoiceLink createNewStickerSet declineChatJoinRequest
    declineSuggestedPost deleteAllMessageReactions deleteBusinessMessages deleteChatPhoto deleteChatStickerSet
    deleteForumTopic deleteMessage deleteMessageReaction deleteMessages deleteMyCommands deleteStickerFromSet
    deleteStickerSet deleteStory deleteWebhook editChatInviteLink editChatSubscriptionInviteLink editForumTopic
    editGeneralForumTopic editMessageCaption editMessageChecklist editMessageLiveLocation editMessageMedia
    editMessageReplyMarkup editMessageText editStory editUserStarSubscription exportChatInviteLink forwardMessage
    forwardMessages getAvailableGifts getBusinessAccountGifts getBusinessAccountStarBalance getBusinessConnection
    getChat getChatAdministrators getChatGifts getChatMember getChatMemberCount getChatMenuButton
    getCustomEmojiStickers getFile getForumTopicIconStickers getGameHighScores getManagedBotAccessSettings
    getManagedBotToken getMe getMyCommands getMyDefaultAdministratorRights getMyDescription getMyName
    getMyShortDescription getMyStarBalance getStarTransactions getStickerSet getUpdates getUserChatBoosts getUserGifts
    getUserPersonalChatMessages getUserProfileAudios getUserProfilePhotos getWebhookInfo giftPremiumSubscription
    hideGeneralForumTopic leaveChat logOut pinChatMessage postStory promoteChatMember readBusinessMessage
    refundStarPayment removeBusinessAccountProfilePhoto removeChatVerification removeMyProfilePhoto
    removeUserVerification reopenForumTopic reopenGeneralForumTopic replaceManagedBotToken replaceStickerInSet
    repostStory restrictChatMember revokeChatInviteLink savePreparedInlineMessage savePreparedKeyboardButton
    sendAnimation sendAudio sendChatAction sendChecklist sendContact sendDice sendDocument sendGame sendGift
    sendInvoice sendLivePhoto sendLocation sendMediaGroup sendMessage sendMessageDraft sendPaidMedia sendPhoto sendPoll
    sendSticker sendVenue sendVideo sendVideoNote sendVoice setBusinessAccountBio setBusinessAccountGiftSettings
    setBusinessAccountName setBusinessAccountProfilePhoto setBusinessAccountUsername setChatAdministratorCustomTitle
    setChatDescription setChatMemberTag setChatMenuButton setChatPermissions setChatPhoto setChatStickerSet
    setChatTitle setCustomEmojiStickerSetThumbnail setGameScore setManagedBotAccessSettings setMessageReaction
    setMyCommands setMyDefaultAdministratorRights setMyDescription setMyName setMyProfilePhoto setMyShortDescription
    setPassportDataErrors setStickerEmojiList setStickerKeywords setStickerMaskPosition setStickerPositionInSet
    setStickerSetThumbnail setStickerSetTitle setUserEmojiStatus setWebhook stopMessageLiveLocation stopPoll
    transferBusinessAccountStars transferGift unbanChatMember unbanChatSenderChat unhideGeneralForumTopic
    unpinAllChatMessages unpinAllForumTopicMessages unpinAllGeneralForumTopicMessages unpinChatMessage upgradeGift
    uploadStickerFile verifyChat verifyUser
    """.split()
}


class ApiError(Exception):
    """A Bot API error answer: HTTP ``status`` == ``error_code``, ``description``, optional ``parameters``."""

    def __init__(self, status: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def json_response(status: int, body: dict) -> Response:
    """A JSON answer with HTTP ``status`` (UTF-8, non-ASCII kept as is)."""
    return Response(
        json.dumps(body, ensure_ascii=False).encode("utf-8"), status_code=status, media_type="application/json"
    )


def to_int(value: object, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return int(float(str(value).strip()))
        except ValueError:
            return 0


def to_float(value: object, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() in {"true", "1"}


def to_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, UploadedFile):
        return None
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def to_json(value: object, what: str) -> Any:
    """A structured parameter: already decoded (JSON body) or JSON text (form body). ``what`` names it in errors."""
    if value is None or value == "":
        return None
    if isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(str(value))
    except ValueError:
        raise ApiError(400, f"Bad Request: can't parse {what} JSON object") from None


def summarise(params: dict) -> dict:
    return {
        key: f"<upload {value.filename!r}, {len(value.data)} bytes>" if isinstance(value, UploadedFile) else value
        for key, value in params.items()
    }


async def read_params(request: Request) -> dict[str, Any]:
    """Merge query string and body parameters (JSON, urlencoded or multipart) the way the Bot API accepts them."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON encoded request") from None
            if not isinstance(data, dict):
                raise ApiError(400, "Bad Request: JSON object expected")
            params.update(data)
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form(max_part_size=50 * 1024 * 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    params[key] = UploadedFile(value.filename, value.content_type, await value.read())
                else:
                    params[key] = value
    return params

