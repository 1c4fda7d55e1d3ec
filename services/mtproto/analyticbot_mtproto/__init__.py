"""The AnalyticBot MTProto collector (Telethon)."""
