"""``otayori demo``: a seminar rehearsal end to end on the embedded default, checked against what the emulators and
the SMTP sink received.

What happens (issue 2 item 9, issue 3 "Tests"):

1. ``directory`` (default ``var/demo``) is wiped and recreated; a fresh SQLite file is migrated there before any
   event loop starts (Alembic's ``env.py`` calls ``asyncio.run``: :mod:`storage.migrate`). ``.env`` is ignored.
2. The whole stack starts on 127.0.0.1 (:func:`bots.sandbox.stack.running_stack`): the Telegram and LINE emulators,
   an SMTP sink (aiosmtpd), our web app, the real python-telegram-bot polling and the real line-bot-sdk client.
   Nothing external is contacted; mail addresses are on ``example.jp`` / ``example.com``.
3. The campaign ``seminar-2026-12`` is registered. ``attendees`` people, about half on each platform, arrive through
   it and type realistic Japanese (:mod:`bots.demo.script`): deep links, ``登録`` with U+3000, full-width letters,
   zero-width spaces, questions first, the consent button or ``同意``. They act concurrently in small bounded
   groups; every choice comes from a seeded :class:`random.Random`, so the script is the same on every run.
4. Two withdraw, one blocks the bot on LINE, one who stays asks ``解除ってどうやるんですか？``. A few who stay add an
   email address by double opt-in: from the chat (``メール　ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ``, the code typed back, once
   in full-width digits) or the campaign's web form (link opened with a GET, confirmed with a POST); one asks and
   never confirms.
5. The author broadcasts the sample issue in ``examples/`` with :func:`bots.broadcasting.broadcast_with`.
6. A report is printed, then :func:`bots.demo.checks.verify` compares the script's expectation with what the
   emulators and the SMTP sink received (plus the delivery rows, the ledger, ``otayori audit`` and the consent
   export). Exit code 0 only when every check agrees.

Modules: :mod:`~bots.demo.script` (who does what), :mod:`~bots.demo.facts` (expectation, observation, check),
:mod:`~bots.demo.checks` and :mod:`~bots.demo.mail_checks` (the pure verdict), :mod:`~bots.demo.waiting`,
:mod:`~bots.demo.chat_steps` and :mod:`~bots.demo.email_steps` (acting), :mod:`~bots.demo.rehearsal` (driving the
stack), :mod:`~bots.demo.observe` (reading it), :mod:`~bots.demo.report` (tables), :mod:`~bots.demo.command`
(:func:`run_demo`).
"""

from bots.demo.command import run_demo

__all__ = ["run_demo"]
