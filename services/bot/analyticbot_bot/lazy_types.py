"""Build aiogram's pydantic validators on first use instead of at import (about 100 MiB RSS and 4 s less).

aiogram declares its Telegram types with `defer_build=True`, but aiogram/types/__init__.py then calls
`model_rebuild(_types_namespace=...)` on each of its ~450 types, which builds every validator at once. `install()`
(before aiogram's first import) turns those calls into "remember the namespace"; a type is then built the first
time it is used, its forward references resolved from that namespace. `warm_up()` builds what every update needs
(Update, SendMessage, Response[Message]) and checks it; if anything fails, it restores aiogram's eager behaviour.
Relies on pydantic's `_types_namespace` parameter of `model_rebuild` (what aiogram itself passes): checked, and
skipped with a warning when absent."""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

log = logging.getLogger("analyticbot.bot")
_AIOGRAM = ("aiogram.types.", "aiogram.methods.")
_namespace: dict[str, Any] = {}
_original: Any = None


def install() -> bool:
    """Patch `BaseModel.model_rebuild` for aiogram's models only; False (nothing changed) when it can't be done."""
    global _original
    if _original is not None:
        return True
    if "aiogram" in sys.modules:
        log.warning("aiogram was imported before lazy_types.install(): its types are built eagerly")
        return False  # too late: aiogram has already built everything
    original = BaseModel.__dict__.get("model_rebuild")
    func: Callable[..., bool | None] | None = getattr(original, "__func__", None)
    if func is None or not {"_types_namespace", "_parent_namespace_depth"} <= set(inspect.signature(func).parameters):
        log.warning("pydantic's model_rebuild has changed: aiogram's types are built eagerly")
        return False

    def model_rebuild(
        cls: type[BaseModel],
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: Mapping[str, Any] | None = None,
    ) -> bool | None:
        if cls.__module__.startswith(_AIOGRAM):
            if _types_namespace is not None and cls.__module__.startswith("aiogram.types."):
                _namespace.update(_types_namespace)
                if not force and cls.model_config.get("defer_build"):
                    return None  # aiogram's import-time loop: deferred to first use
            elif _types_namespace is None and _namespace:
                _types_namespace = _namespace  # a build on first use: aiogram's forward references
        return func(
            cls,
            force=force,
            raise_errors=raise_errors,
            _parent_namespace_depth=_parent_namespace_depth + 1,
            _types_namespace=_types_namespace,
        )

    _original = original
    BaseModel.model_rebuild = classmethod(model_rebuild)  # type: ignore[method-assign,assignment]  # patching pydantic
    return True


def active() -> bool:
    """Whether aiogram's types are being built on first use (install() took, warm_up() kept it)."""
    return _original is not None and BaseModel.__dict__.get("model_rebuild") is not _original


def warm_up() -> None:
    """Build and check what every update uses; on any failure, build all types eagerly as aiogram would."""
    if _original is None:
        return
    from aiogram import types
    from aiogram.methods import SendMessage
    from aiogram.methods.base import Response

    try:
        update = types.Update.model_validate(
            {
                "update_id": 1,
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "text": "/start",
                    "chat": {"id": 1, "type": "private"},
                    "from": {"id": 1, "is_bot": False, "first_name": "x"},
                    "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                },
            }
        )
        assert update.message is not None and update.message.from_user is not None
        assert SendMessage(chat_id=1, text="x").model_dump()["text"] == "x"
        Response[types.Message].model_validate({"ok": True, "result": update.message.model_dump()})
    except Exception as exc:  # any failure: fall back to aiogram's own behaviour
        log.warning("lazy aiogram types failed (%s: %s); building all of them", type(exc).__name__, exc)
        BaseModel.model_rebuild = _original  # type: ignore[method-assign]  # undoing the patch
        from aiogram import methods

        namespace = _namespace or vars(types)
        for module in (types, methods):  # aiogram's own loop, plus the methods that could not be built
            for name in module.__all__:
                model = getattr(module, name)
                if isinstance(model, type) and issubclass(model, BaseModel) and not model.__pydantic_complete__:
                    model.model_rebuild(_types_namespace=namespace)
