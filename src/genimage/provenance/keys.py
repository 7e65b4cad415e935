"""Ed25519 signing keys for provenance manifests (RFC 8032, through the ``cryptography`` package).

Layout of a key folder (``genimage keys new [--dir DIR]``; default ``$GENIMAGE_KEYS_DIR`` or
``~/.config/genimage/keys``, honouring ``$XDG_CONFIG_HOME``)::

    DIR/signing.key              private key, PEM PKCS#8, unencrypted, mode 0600
    DIR/trusted/<key id>.pub     its public key, PEM SubjectPublicKeyInfo

A key id is the first 16 hex digits of the sha256 of the raw 32-byte public key. Signing on
save happens when a private key is configured: ``$GENIMAGE_SIGNING_KEY`` (a private key file;
``off`` disables signing) or, when that is unset, ``DIR/signing.key`` if it exists. The
trusted public keys a verifier accepts are every ``*.pub`` in a folder: ``--trusted DIR``,
else ``$GENIMAGE_TRUSTED_KEYS``, else ``DIR/trusted``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from genimage.errors import GenimageError
from genimage.utils.atomic import atomic_path

KEYS_DIR_ENV = "GENIMAGE_KEYS_DIR"
SIGNING_KEY_ENV = "GENIMAGE_SIGNING_KEY"
TRUSTED_ENV = "GENIMAGE_TRUSTED_KEYS"
PRIVATE_NAME = "signing.key"
TRUSTED_NAME = "trusted"


def default_keys_dir() -> Path:
    """``$GENIMAGE_KEYS_DIR``, else ``$XDG_CONFIG_HOME/genimage/keys`` (``~/.config`` by default)."""
    if os.environ.get(KEYS_DIR_ENV):
        return Path(os.environ[KEYS_DIR_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "genimage" / "keys"


def public_key_id(raw_public: bytes) -> str:
    """Key id of a raw 32-byte Ed25519 public key: first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """A loaded private key.

    Attributes:
        private_key: The ``cryptography`` Ed25519 private key.
        public_raw: Its raw 32-byte public key.
        key_id: :func:`public_key_id` of ``public_raw``.
        path: File it was read from (``None`` for a key made in memory).
    """

    private_key: object
    public_raw: bytes
    key_id: str
    path: Path | None = None

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    @classmethod
    def generate(cls) -> "Signer":
        """A fresh random key (not written anywhere)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls._of(Ed25519PrivateKey.generate(), None)

    @classmethod
    def _of(cls, key, path: Path | None) -> "Signer":
        from cryptography.hazmat.primitives import serialization as ser

        raw = key.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        return cls(key, raw, public_key_id(raw), path)

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization as ser

        return self.private_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())

    def public_pem(self) -> bytes:
        return public_pem(self.public_raw)


def public_pem(raw_public: bytes) -> bytes:
    """PEM SubjectPublicKeyInfo of a raw Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(raw_public)
    return key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)


def load_signer(path: str | Path) -> Signer:
    """Read a PEM PKCS#8 Ed25519 private key file."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path).expanduser()
    if not path.is_file():
        raise GenimageError(f"signing key not found: {path} (make one with `genimage keys new`)")
    try:
        key = ser.load_pem_private_key(path.read_bytes(), password=None)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise GenimageError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise GenimageError(f"{path} holds a {type(key).__name__}, not an Ed25519 key; make one with `genimage keys new`")
    return Signer._of(key, path)


def load_public_key(path: str | Path) -> bytes:
    """The raw 32-byte public key of a PEM SubjectPublicKeyInfo Ed25519 file."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(path)
    try:
        key = ser.load_pem_public_key(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise GenimageError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise GenimageError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)


_cache: dict[tuple[str, float], Signer] = {}


def configured_signer() -> Signer | None:
    """The signing key in use (module docstring), or ``None`` when none is configured."""
    env = os.environ.get(SIGNING_KEY_ENV)
    if env is not None and env.strip().lower() in ("off", "none", "0", ""):
        return None
    path = Path(env).expanduser() if env else default_keys_dir() / PRIVATE_NAME
    if not env and not path.is_file():
        return None
    try:
        stamp = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        raise GenimageError(f"{SIGNING_KEY_ENV}={env}: no such key file (make one with `genimage keys new`)") from None
    if stamp not in _cache:
        _cache[stamp] = load_signer(path)
    return _cache[stamp]


def trusted_dir(explicit: str | Path | None = None) -> Path:
    """The folder of trusted public keys: ``explicit``, ``$GENIMAGE_TRUSTED_KEYS`` or ``<keys dir>/trusted``."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(TRUSTED_ENV):
        return Path(os.environ[TRUSTED_ENV]).expanduser()
    return default_keys_dir() / TRUSTED_NAME


def trusted_keys(folder: str | Path | None = None) -> dict[str, bytes]:
    """``{key id: raw public key}`` of every ``*.pub`` in the trusted folder (empty if it is missing)."""
    folder = trusted_dir(folder)
    if folder.exists() and not folder.is_dir():
        raise GenimageError(f"trusted keys must be a folder of .pub files, got the file {folder}")
    out = {}
    for p in sorted(folder.glob("*.pub")) if folder.is_dir() else []:
        raw = load_public_key(p)
        out[public_key_id(raw)] = raw
    return out


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only at every moment (created
    0600, never widened; :func:`genimage.utils.atomic.atomic_path` would give the umask default)."""
    import secrets

    from genimage.utils.atomic import fsync_path

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def new_keys(folder: str | Path | None = None, force: bool = False) -> tuple[Signer, Path, Path]:
    """Make a key pair in ``folder`` (default :func:`default_keys_dir`): the private key (0600)
    and its public key in ``trusted/``. Refuses to replace an existing private key unless
    ``force``. Returns the signer, the private key path and the public key path."""
    folder = Path(folder).expanduser() if folder else default_keys_dir()
    private = folder / PRIVATE_NAME
    if private.exists() and not force:
        raise GenimageError(f"{private} already exists; pass --force to replace it (images it signed then "
                            "verify only while its public key stays in the trusted folder)")
    signer = Signer.generate()
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(private, signer.private_pem())
    public = folder / TRUSTED_NAME / f"{signer.key_id}.pub"
    with atomic_path(public) as tmp:
        tmp.write_bytes(signer.public_pem())
    return Signer._of(signer.private_key, private), private, public
