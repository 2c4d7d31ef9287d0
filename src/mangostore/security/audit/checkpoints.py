"""Signed checkpoints of the audit chain's head, kept outside the database.

A chain alone cannot show that events were cut from its end: the remaining prefix
verifies. A checkpoint names the sequence number and MAC of the head at one moment,
signed with the audit key; ``verify(checkpoint)`` then detects a log that ends
before it or was rewritten since.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Final

from mangostore.errors import TamperedDataError, ValidationError
from mangostore.keys.envelope import length_prefixed
from mangostore.security.audit.chain import encode

__all__ = ["AuditCheckpoint", "check_genuine", "sign_checkpoint"]

_CHECKPOINT_LABEL: Final = b"mangostore/audit/checkpoint/v1"
_CHECKPOINT_FORMAT: Final = "mangostore-audit-checkpoint"
_MAC_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """The head of the chain at one moment, signed with the audit key.

    Keep it outside the database (another machine, a printout): a log truncated
    after it was taken is then detected by ``verify(checkpoint)``, which a chain
    alone cannot show. The signature covers every other field, so a checkpoint
    cannot be altered, or moved to another database, without detection.
    """

    vault_id: str
    seq: int
    mac: bytes
    created_at: int
    signature: bytes = field(repr=False)

    def to_json(self) -> str:
        """Serialise to a JSON object (hex for the binary fields)."""
        return json.dumps(
            {
                "format": _CHECKPOINT_FORMAT,
                "version": 1,
                "vault_id": self.vault_id,
                "seq": self.seq,
                "mac": self.mac.hex(),
                "created_at": self.created_at,
                "signature": self.signature.hex(),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditCheckpoint:
        """Read a checkpoint written by :meth:`to_json`; the signature is checked by verify.

        Raises:
            ValidationError: the text is not a well-formed checkpoint.
        """
        try:
            doc = json.loads(text)
        except (TypeError, ValueError, UnicodeDecodeError):
            raise ValidationError("the audit checkpoint is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != _CHECKPOINT_FORMAT:
            raise ValidationError("that is not a mangostore audit checkpoint")
        if doc.get("version") != 1:
            raise ValidationError(
                f"audit checkpoint version {doc.get('version')!r} is not supported"
            )
        vault_id, seq, created_at = doc.get("vault_id"), doc.get("seq"), doc.get("created_at")
        if not (isinstance(vault_id, str) and _is_count(seq) and _is_count(created_at)):
            raise ValidationError("the audit checkpoint is incomplete or malformed")
        assert isinstance(seq, int)
        assert isinstance(created_at, int)
        try:
            mac = bytes.fromhex(doc["mac"])
            signature = bytes.fromhex(doc["signature"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError("the audit checkpoint's MAC or signature is malformed") from None
        if len(mac) != _MAC_BYTES or len(signature) != _MAC_BYTES:
            raise ValidationError("the audit checkpoint's MAC or signature has the wrong length")
        return cls(vault_id, seq, mac, created_at, signature)


def sign_checkpoint(key: bytes, vault_id: str, seq: int, mac: bytes, at: int) -> AuditCheckpoint:
    """Return the checkpoint of event ``seq`` (whose MAC is ``mac``), taken at ``at``.

    Args:
        key: the audit key.
        vault_id: the keyring's vault id (binds the checkpoint to this database).
        seq: the head's sequence number (0 for an empty log).
        mac: the MAC the head carries (the genesis value for an empty log).
        at: when the checkpoint is taken (epoch ms).
    """
    return AuditCheckpoint(vault_id, seq, mac, at, _signature(key, vault_id, seq, mac, at))


def check_genuine(key: bytes, vault_id: str, checkpoint: AuditCheckpoint) -> None:
    """Refuse a checkpoint that was not signed with ``key`` for the vault ``vault_id``.

    Raises:
        TamperedDataError: it was altered, forged, or taken from another database.
    """
    expected = _signature(
        key, checkpoint.vault_id, checkpoint.seq, checkpoint.mac, checkpoint.created_at
    )
    if checkpoint.vault_id != vault_id or not hmac.compare_digest(expected, checkpoint.signature):
        raise TamperedDataError(
            "the audit checkpoint is not genuine: its signature does not match (it was "
            "altered, forged, or taken from another database); it was not used"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _signature(key: bytes, vault_id: str, seq: int, mac: bytes, at: int) -> bytes:
    message = _CHECKPOINT_LABEL + length_prefixed(vault_id) + encode(seq) + encode(mac) + encode(at)
    return hmac.digest(key, message, "sha256")
