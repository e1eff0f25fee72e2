"""jasypt's ``StandardPBEStringEncryptor``, read and written with ``cryptography``.

Layout of what jasypt writes (Base64 inside ``ENC(...)``)::

    salt (block size) | IV (block size, random IV generator only) | ciphertext

* ``PBEWITHHMACSHA<n>ANDAES_<k>`` (the jasypt-spring-boot 3.x default is SHA512/AES_256):
  key = PBKDF2-HMAC-SHA<n>(password, 16-byte salt, iterations, k bits), then
  AES-CBC with PKCS#7 padding and the 16-byte IV that follows the salt. Without a random IV
  generator jasypt cannot decrypt its own AES output, so the IV is always there.
* ``PBEWITHMD5ANDDES`` (jasypt-spring-boot 2.x and jasypt's own default): PBKDF1-MD5
  (``MD5^iterations(password | 8-byte salt)``) gives the DES key (first 8 bytes) and IV (last
  8 bytes); DES-CBC, PKCS#5. jasypt-spring-boot 2.x wrote no IV (``random_iv=False``); 3.x
  writes an 8-byte random IV after the salt that the cipher ignores (``random_iv=True``).

Passwords are ASCII (Java's PBE key factories refuse anything else); messages are UTF-8,
NFC-normalised first, as jasypt does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ._lib import require

__all__ = ["ALGORITHMS", "Jasypt"]


@dataclass(frozen=True, slots=True)
class _Scheme:
    kind: str  # "pbes2" or "pbes1"
    digest: str  # the PRF's (pbes2) or the KDF's (pbes1) hash
    key_bytes: int
    block: int  # the cipher's block size: salt and IV sizes


def _schemes() -> dict[str, _Scheme]:
    found = {"PBEWITHMD5ANDDES": _Scheme("pbes1", "md5", 8, 8)}
    for sha in ("SHA1", "SHA224", "SHA256", "SHA384", "SHA512"):
        for bits in (128, 256):
            found[f"PBEWITHHMAC{sha}ANDAES_{bits}"] = _Scheme("pbes2", sha.lower(), bits // 8, 16)
    return found


_SCHEMES = _schemes()
#: The algorithm names :class:`Jasypt` accepts (case-insensitive), as Java spells them.
ALGORITHMS = tuple(sorted(_SCHEMES))
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class Jasypt:
    """Encrypt and decrypt values as jasypt's ``StandardPBEStringEncryptor`` does (random
    salt, Base64 output), byte for byte: values that Java services read work unchanged.

    Args:
        password: The encryption password (read it from the environment or a file, see
            :func:`aioapollo.crypto.decryptor_from_env`; never from a command line).
        algorithm: ``"PBEWITHHMACSHA512ANDAES_256"`` (jasypt-spring-boot 3.x's default) or
            another ``PBEWITHHMACSHA<n>ANDAES_<bits>``, or ``"PBEWithMD5AndDES"`` (2.x's).
        iterations: Key-derivation iterations (jasypt's default: 1000).
        random_iv: Whether an IV follows the salt (jasypt's ``RandomIvGenerator``, the 3.x
            default). Only ``PBEWithMD5AndDES`` values from jasypt-spring-boot 2.x (or
            jasypt's ``NoIvGenerator``) need ``False``; AES always has one.

    The password is never shown: not in the repr, not in any error.
    """

    __slots__ = ("_algorithm", "_iterations", "_password", "_random_iv", "_scheme")

    def __init__(
        self,
        password: str,
        algorithm: str = "PBEWITHHMACSHA512ANDAES_256",
        iterations: int = 1000,
        *,
        random_iv: bool = True,
    ) -> None:
        require()
        if not isinstance(password, str) or not password:
            raise ValueError("the jasypt password must be a non-empty string")
        scheme = _SCHEMES.get(algorithm.upper())
        if scheme is None:
            raise ValueError(
                f"unknown jasypt algorithm {algorithm!r}; one of: {', '.join(ALGORITHMS)}"
            )
        if scheme.kind == "pbes2" and not random_iv:
            raise ValueError(
                f"{algorithm} needs random_iv=True: without a random IV generator jasypt "
                "cannot decrypt AES values either"
            )
        if iterations < 1:
            raise ValueError("iterations must be at least 1")
        password = unicodedata.normalize("NFC", password)
        if not password.isascii():
            # Java's PBE key factories refuse them, so no jasypt value can have one.
            raise ValueError("jasypt passwords are ASCII only (Java refuses any other)")
        if scheme.kind == "pbes1":
            _des()  # say now, not at the first value, when DES is gone
        self._password = password.encode()
        self._algorithm = algorithm.upper()
        self._scheme = scheme
        self._iterations = iterations
        self._random_iv = random_iv

    def __repr__(self) -> str:
        return (
            f"Jasypt(algorithm={self._algorithm!r}, iterations={self._iterations}, "
            f"random_iv={self._random_iv})"
        )

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def iterations(self) -> int:
        return self._iterations

    def encrypt(self, text: str) -> str:
        """``text`` encrypted with a fresh random salt (and IV): the Base64 that goes inside
        ``ENC(...)``. Encrypting the same text twice gives different results."""
        block = self._scheme.block
        salt = os.urandom(block)
        iv = os.urandom(block) if self._random_iv else b""
        data = unicodedata.normalize("NFC", text).encode()
        body = self._cipher(salt, iv, encrypt=True, data=data)
        return base64.b64encode(salt + iv + body).decode("ascii")

    def decrypt(self, text: str) -> str:
        """The plain text of ``text`` (the Base64 inside ``ENC(...)``, or the whole
        ``ENC(...)``). :class:`ValueError` when it does not decrypt (a wrong password, an
        algorithm or IV setting that differs from the one it was encrypted with, corrupt
        text); the message never holds the text."""
        text = text.strip()
        if text.startswith("ENC(") and text.endswith(")"):
            text = text[4:-1].strip()
        if not _BASE64.fullmatch(text):
            raise ValueError("not a jasypt value: not Base64")
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("not a jasypt value: not Base64") from None
        block = self._scheme.block
        head = block * (2 if self._random_iv else 1)
        if len(raw) < head + block or (len(raw) - head) % block:
            raise ValueError("not a jasypt value of this algorithm: wrong length")
        salt, iv, body = raw[:block], raw[block:head], raw[head:]
        plain = self._cipher(salt, iv, encrypt=False, data=body)
        try:
            return plain.decode()
        except UnicodeDecodeError:
            raise ValueError("does not decrypt: the result is not UTF-8 text") from None

    def _cipher(self, salt: bytes, iv: bytes, *, encrypt: bool, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes, padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

        scheme = self._scheme
        algorithm: Any
        if scheme.kind == "pbes2":
            prf = getattr(hashes, scheme.digest.upper())()
            kdf = PBKDF2HMAC(prf, scheme.key_bytes, salt, self._iterations)
            key = kdf.derive(self._password)
            algorithm, cbc_iv = algorithms.AES(key), iv
        else:
            derived = self._password + salt
            for _ in range(self._iterations):
                derived = hashlib.md5(derived).digest()
            # DES is TripleDES with three equal keys (EDE with K1 = K2 = K3).
            algorithm, cbc_iv = _des()(derived[:8] * 3), derived[8:16]
        cipher = Cipher(algorithm, modes.CBC(cbc_iv))
        pad = padding.PKCS7(scheme.block * 8)
        if encrypt:
            padder = pad.padder()
            padded = padder.update(data) + padder.finalize()
            enc = cipher.encryptor()
            return enc.update(padded) + enc.finalize()
        dec = cipher.decryptor()
        padded = dec.update(data) + dec.finalize()
        unpadder = pad.unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise ValueError(
                "does not decrypt: wrong password, another algorithm or IV setting, or corrupt text"
            ) from None


def _des() -> Any:
    """cryptography's TripleDES (for DES), or an error saying it is gone."""
    require()
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:
        raise ValueError(
            "PBEWithMD5AndDES needs DES, which this version of the cryptography package no "
            "longer offers: re-encrypt the values with PBEWITHHMACSHA512ANDAES_256, or pin "
            "an older cryptography"
        ) from None
    return TripleDES
