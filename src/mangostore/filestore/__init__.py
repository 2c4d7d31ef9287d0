"""Encrypted file storage beside the database: ``db.files`` (docs/files.md).

:mod:`.chunking` splits files into content-defined chunks, :mod:`.chunkcrypt` seals
each under its owner's data key, :mod:`.chunkstore` keeps them in ``<db>.files/``,
:mod:`.stream` reads them back as a seekable stream, :mod:`.checking` sweeps and
checks, :mod:`.transfer` is what backups use, :mod:`.remote` sends and fetches chunks
through a sync relay, :mod:`.attachments` ties files to AI conversations, and
:mod:`.service` is ``db.files``.
"""

from mangostore.filestore.attachments import Attachment, Attachments
from mangostore.filestore.model import CheckReport, FileRecord, FileUsage, SweepReport
from mangostore.filestore.remote import BlobRelay, SendReport
from mangostore.filestore.service import FileService
from mangostore.filestore.stream import FileStream

__all__ = [
    "Attachment",
    "Attachments",
    "BlobRelay",
    "CheckReport",
    "FileRecord",
    "FileService",
    "FileStream",
    "FileUsage",
    "SendReport",
    "SweepReport",
]
