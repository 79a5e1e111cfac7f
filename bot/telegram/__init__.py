"""The Telegram adapter: python-telegram-bot wiring and Telegram HTML rendering only.

Everything a second platform would also need lives in :mod:`bot.conversation`.
Import :class:`bot.telegram.adapter.TelegramAdapter` lazily (it pulls in PTB).
"""
