"""Routes of the whole database: health, audit verification and the privacy export.

``GET /v1/audit/verify`` needs ``admin`` on the resource ``terminal`` /
:data:`AUDIT_RESOURCE` (the log is everyone's); ``POST /v1/privacy/export`` exports the
caller's own data, decrypted, and needs ``admin`` on ``terminal`` for the caller's id.
"""

# Annotations are evaluated at once (no ``from __future__ import annotations``): FastAPI
# reads the route signatures, whose dependencies are local to the factory.
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from mangostore.api.security import ApiContext, Caller
from mangostore.api.shapes import as_json

__all__ = ["AUDIT_RESOURCE", "admin_routes"]

#: The resource id a permission to verify the audit log names.
AUDIT_RESOURCE = "audit"


def admin_routes(ctx: ApiContext) -> APIRouter:
    """The routes of health, audit verification and privacy export."""
    db = ctx.db
    router = APIRouter()
    CallerDep = Annotated[Caller, Depends(ctx.caller)]

    @router.get("/v1/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Whether the server and its database answer (no token needed)."""
        db.query("SELECT 1", use_cache=False)
        return {"status": "ok", "schema_version": db.schema_version}

    @router.get("/v1/audit/verify", tags=["audit"])
    def verify_audit(caller: CallerDep) -> dict[str, Any]:
        """Walk the audit log's HMAC chain and report the first break, if any."""
        ctx.allow(caller, "terminal", AUDIT_RESOURCE, "admin")
        return as_json(db.audit.verify())  # type: ignore[no-any-return]

    @router.post("/v1/privacy/export", tags=["privacy"])
    def export(caller: CallerDep) -> dict[str, Any]:
        """Every row of the caller's data, decrypted, by table, with each file's row
        count and SHA-256 as ``db.privacy.export_user`` wrote them."""
        ctx.allow(caller, "terminal", caller.user_id, "admin")
        with tempfile.TemporaryDirectory(prefix="mangostore-export-") as folder:
            target = Path(folder) / "export"
            manifest = db.privacy.export_user(caller.user_id, target)
            files = []
            for item in manifest.files:
                text = (target / item.name).read_text(encoding="utf-8")
                files.append(
                    {
                        "name": item.name,
                        "table": item.table,
                        "rows": item.rows,
                        "sha256": item.sha256,
                        "lines": [json.loads(line) for line in text.splitlines() if line],
                    }
                )
        return {
            "user_id": manifest.user_id,
            "created_at": manifest.created_at,
            "schema_version": manifest.schema_version,
            "files": files,
        }

    return router
