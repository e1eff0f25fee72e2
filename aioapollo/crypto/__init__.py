"""Encrypted values: ``ENC(...)`` in Apollo, plain text in ``get()`` (see docs/secrets.md).

Pass a decryptor to the client (``ApolloClient(..., decryptor=Jasypt(password))``) or set
``APOLLO_JASYPT_PASSWORD`` / ``APOLLO_FERNET_KEYS`` for ``from_env()``. The built-in ones need
``pip install 'aioapollo-client[crypto]'`` (the ``cryptography`` package).
"""

from ._env import CRYPTO_ENV, decryptor_from_env
from ._fernet import Fernet
from ._jasypt import ALGORITHMS, Jasypt
from ._types import Decryptor, DecryptorLike, is_encrypted, unwrap

__all__ = [
    "ALGORITHMS",
    "CRYPTO_ENV",
    "Decryptor",
    "DecryptorLike",
    "Fernet",
    "Jasypt",
    "decryptor_from_env",
    "is_encrypted",
    "unwrap",
]

for _name in ("Decryptor", "Fernet", "Jasypt"):
    globals()[_name].__module__ = "aioapollo.crypto"
del _name
