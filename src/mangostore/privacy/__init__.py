"""Privacy services (design section 13): retention, export and erasure.

``db.privacy`` is a :class:`PrivacyService`. Archive files written by retention are
read back with :func:`read_archive`; an export is checked with :func:`verify_export`.
See docs/privacy.md.

The modules: :mod:`.service` (the facade), :mod:`.retention`, :mod:`.export`,
:mod:`.erasure`, and beneath them :mod:`.archive` (archive files), :mod:`.ownership`
(which rows belong to a user) and :mod:`.common`.
"""

from mangostore.privacy.archive import Archive, read_archive
from mangostore.privacy.erasure import ErasureReport
from mangostore.privacy.export import ExportedFile, ExportManifest, verify_export
from mangostore.privacy.retention import (
    DEFAULT_POLICIES,
    RetentionPolicy,
    RetentionReport,
    TableRetention,
)
from mangostore.privacy.service import PrivacyService

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
