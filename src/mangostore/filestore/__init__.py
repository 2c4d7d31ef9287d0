"""Encrypted file storage beside the database: ``db.files`` (docs/files.md).

:mod:`.chunking` splits files into content-defined chunks, :mod:`.chunkcrypt` seals
each under its owner's data key, :mod:`.chunkstore` keeps them in ``<db>.files/``,
:mod:`.stream` reads them back as a seekable stream, :mod:`.checking` sweeps and
checks, :mod:`.transfer` is what backups use, and :mod:`.service` is ``db.files``.
"""

from mangostore.filestore.model import CheckReport, FileRecord, FileUsage, SweepReport
from mangostore.filestore.service import FileService
from mangostore.filestore.stream import FileStream

__all__ = ["CheckReport", "FileRecord", "FileService", "FileStream", "FileUsage", "SweepReport"]
