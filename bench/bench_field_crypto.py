"""Field encryption benchmarks: one 200-byte JSON value, against bare AES-256-GCM.

Every mangostore figure has a baseline doing the same cryptography straight through
``cryptography``'s ``AESGCM`` on the same bytes, in the same run:

- ``encrypt``: ``envelope.seal`` (header, associated data, random nonce) and
  ``FieldCipher.encrypt`` (which also finds the user's primary key and counts its use
  in the writer's transaction) next to ``AESGCM.encrypt`` with a random nonce;
- ``decrypt``: ``envelope.open_envelope`` and ``FieldCipher.decrypt`` (cached key)
  next to ``AESGCM.decrypt``.

The database is file-backed with encrypted pages; the commit of the surrounding
transaction is not part of a field's cost and is not timed.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import mangostore
from bench.harness import Config, Measurement, Suite
from mangostore import KdfParams, Settings
from mangostore.keys.envelope import FieldContext, open_envelope, seal
from mangostore.keys.field_cipher import field_cipher_for

PASSPHRASE = "bench: correct horse battery staple"
#: The cheapest Argon2id parameters mangostore accepts; unlocking is not measured here.
FAST_KDF = KdfParams(memory_kib=19_456, iterations=2, parallelism=1)
VALUE_BYTES = 200
TABLE, COLUMN = "users", "security_profile"


def json_value(size: int = VALUE_BYTES) -> bytes:
    """Return a JSON object serialised to exactly ``size`` bytes."""
    doc = {"mfa": True, "methods": ["totp", "webauthn"], "seed": ""}
    base = len(json.dumps(doc, separators=(",", ":")).encode())
    doc["seed"] = "A" * (size - base)
    raw = json.dumps(doc, separators=(",", ":")).encode()
    assert len(raw) == size
    return raw


def run(config: Config) -> list[Measurement]:
    """Time field encryption and decryption against bare AES-GCM; return the rows."""
    plaintext = json_value()
    with tempfile.TemporaryDirectory(prefix="mangostore-bench-") as tmp:
        path = Path(tmp) / "fields.db"
        with mangostore.create(path, PASSPHRASE, settings=Settings(kdf=FAST_KDF)).db as db:
            cipher = field_cipher_for(db)
            assert cipher is not None
            user = str(uuid.uuid4())
            now = int(time.time() * 1000)
            db.execute(
                "INSERT INTO users (id, username, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (user, "bench", now, now),
            )
            with db.store.transaction() as conn:  # makes the user's key
                stored = cipher.encrypt(conn, TABLE, COLUMN, user, user, plaintext)
            key_id = str(cipher.primary_key_id(db.store.writer.connection, user))
            entry = db.keyring.get_data_key(key_id) if db.keyring is not None else None
            assert entry is not None
            key = cipher._key(uuid.UUID(key_id).bytes, user)
            assert key is not None
            context = FieldContext(cipher.vault_id, TABLE, COLUMN, user, user)
            envelope = seal(key, uuid.UUID(key_id), plaintext, context)
            aead = AESGCM(key)
            nonce = secrets.token_bytes(12)
            bare = aead.encrypt(nonce, plaintext, None)

            def lookup(_key_id: bytes) -> bytes:
                return key

            suite = Suite("field crypto", config)
            suite.add(
                "AESGCM encrypt, 200 B",
                lambda: aead.encrypt(secrets.token_bytes(12), plaintext, None),
                number=5000,
            )
            suite.add(
                "envelope seal",
                lambda: seal(key, uuid.UUID(key_id), plaintext, context),
                number=5000,
                baseline="AESGCM encrypt, 200 B",
            )
            suite.add("AESGCM decrypt, 200 B", lambda: aead.decrypt(nonce, bare, None), number=5000)
            suite.add(
                "envelope open",
                lambda: open_envelope(lookup, envelope, context),
                number=5000,
                baseline="AESGCM decrypt, 200 B",
            )
            suite.add(
                "FieldCipher.decrypt",
                lambda: cipher.decrypt(TABLE, COLUMN, user, user, stored),
                number=5000,
                baseline="AESGCM decrypt, 200 B",
            )
            with db.store.transaction() as conn:
                suite.add(
                    "FieldCipher.encrypt",
                    lambda: cipher.encrypt(conn, TABLE, COLUMN, user, user, plaintext),
                    number=2000,
                    baseline="AESGCM encrypt, 200 B",
                )
                return suite.run()
