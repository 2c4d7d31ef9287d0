"""What answers look like: records as JSON, pages, and ETags for single resources."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from mangostore.records import Record, Unreadable

__all__ = ["as_json", "etagged", "page"]


def as_json(value: Any) -> Any:
    """``value`` as plain JSON data: records and dataclasses as objects, a value that
    could not be decrypted as ``null``, bytes never (they do not reach answers)."""
    if isinstance(value, Record):
        return {k: as_json(v) for k, v in value.to_dict().items()}
    if isinstance(value, Unreadable):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return None
    return value


def page(items: Iterable[Any], next_cursor: str | None) -> dict[str, Any]:
    """One page of a list: ``{"items": [...], "next_cursor": ...}``."""
    return {"items": [as_json(item) for item in items], "next_cursor": next_cursor}


def etagged(request: Request, data: Any) -> Response:
    """Answer ``data`` with a strong ETag of its JSON; 304 when the client's
    ``If-None-Match`` already holds it."""
    body = json.dumps(as_json(data), separators=(",", ":"), sort_keys=True).encode()
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    wanted = request.headers.get("if-none-match", "")
    if tag in {part.strip().removeprefix("W/") for part in wanted.split(",")} or wanted == "*":
        return Response(status_code=304, headers={"ETag": tag})
    return JSONResponse(json.loads(body), headers={"ETag": tag})
