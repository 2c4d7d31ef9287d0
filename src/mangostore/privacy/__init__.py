"""Privacy services (design section 13): retention, export and erasure.

``db.privacy`` is a :class:`PrivacyService`. Archive files written by retention are
read back with :func:`read_archive`; an export is checked with :func:`verify_export`.
See docs/privacy.md.
"""

from mangostore.privacy.archive import Archive, read_archive
from mangostore.privacy.service import (
    DEFAULT_POLICIES,
    ErasureReport,
    ExportedFile,
    ExportManifest,
    PrivacyService,
    RetentionPolicy,
    RetentionReport,
    TableRetention,
    verify_export,
)

__all__ = [
    "DEFAULT_POLICIES",
    "Archive",
    "ErasureReport",
    "ExportManifest",
    "ExportedFile",
    "PrivacyService",
    "RetentionPolicy",
    "RetentionReport",
    "TableRetention",
    "read_archive",
    "verify_export",
]
