"""The tamper-evident audit log: ``security_events`` as an append-only HMAC chain.

Every event gets the next sequence number (gap-free, assigned inside the writer's
transaction) and a MAC::

    mac[n] = HMAC-SHA256(audit key, mac[n-1] || canonical(event n))
    mac[0] = HMAC-SHA256(audit key, "mangostore/audit/genesis/v1")

where the audit key is the keyring's ``audit`` sub-key and ``canonical`` is an
unambiguous, type-tagged, length-prefixed encoding of ``seq, id, user_id,
event_type, severity, source_component, event_data, client_info, risk_score,
timestamp``. ``event_data`` and ``client_info`` enter the MAC as stored: AES-256-GCM
envelopes sealed under the data key of the event's subject (``user_id``), or under
the data key of the pseudo-user :data:`~mangostore.schema.sensitive.SYSTEM_OWNER`
for events about no user. Destroying a subject's key (erasure) therefore makes
their events unreadable without breaking the chain.

What is *not* covered by the MAC: ``resolved``, ``resolved_at`` and ``resolved_by``.
Resolving an event (:meth:`AuditLog.resolve`) appends a resolution event to the
chain *and* sets those columns (the only UPDATE the triggers allow);
:meth:`AuditLog.verify` checks that the columns agree with the chained resolutions.

Retention (:meth:`mangostore.privacy.PrivacyService.apply_retention`) removes a
prefix of the chain after appending an *anchor* event that names the last removed
sequence number and the MAC the first remaining event chains from; verification
then starts at the anchor's word, and the anchor itself is authenticated when the
walk reaches it.

Events written before the chain existed (rows migrated from an older schema) store no
MAC, but are chained all the same: their MACs are computed when needed, so the first
event appended after them vouches for them. Until then :meth:`AuditLog.verify` reports
them as not verified.

A database opened without a passphrase has no keyring, hence no audit key: its
events still get sequence numbers, but no MAC, and :meth:`AuditLog.verify` reports
that the log cannot be verified. A key stored in the same file would let anyone who
can edit the file recompute the chain, so none is made up.

The modules: :mod:`.chain` (the table's layout, the encoding, the MAC), :mod:`.log`
(:class:`AuditLog`: appending, resolving, reading), :mod:`.rows` (stored rows back to
records), :mod:`.verify` (the walk and :class:`AuditReport`), :mod:`.checkpoints`
(:class:`AuditCheckpoint`).
"""

from mangostore.security.audit.chain import (
    ANCHOR_COMPONENT,
    ERASURE_COMPONENT,
    RESERVED_PREFIX,
    RESOLUTION_COMPONENT,
    canonical_event,
    genesis_mac,
)
from mangostore.security.audit.checkpoints import AuditCheckpoint
from mangostore.security.audit.log import AuditLog
from mangostore.security.audit.verify import AuditReport

__all__ = [
    "ANCHOR_COMPONENT",
    "ERASURE_COMPONENT",
    "RESERVED_PREFIX",
    "RESOLUTION_COMPONENT",
    "AuditCheckpoint",
    "AuditLog",
    "AuditReport",
    "canonical_event",
    "genesis_mac",
]
