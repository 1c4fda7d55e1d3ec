"""The AnalyticBot Telegram bot (aiogram 3, webhook mode)."""
