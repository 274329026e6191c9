"""Tenant credentials sealed at rest: the clear model, the sealed form, the KEK and the vault.

The secrets trigger and ``connect_alpaca`` seal; the worker and the stream gateway open::

    vault = Vault.from_settings(settings)          # built once per instance, contacts nothing
    fields = vault.seal(parse_plaintext(doc), uid, path, keys_version)
    credentials = vault.open(sealed_doc, uid, path) # AlpacaKeys | OAuthToken

Failures follow the retry contract: ``CredentialsTampered`` (permanent: dead-letter, audit)
when a ciphertext does not open for its tenant and document, ``KmsUnavailable`` (retryable,
never a verdict on the credentials) when the KEK cannot be used now.
"""

from agenttrader.credentials.kek import CloudKmsKek, KekCounts, MeteredKek, kek_for
from agenttrader.credentials.local_kek import LocalKek
from agenttrader.credentials.model import (
    AlpacaKeys,
    AuthKind,
    Credentials,
    OAuthToken,
    auth_of,
    hint_of,
    parse_plaintext,
)
from agenttrader.credentials.sealed import PLAINTEXT_FIELDS, SealedForm, is_sealed
from agenttrader.credentials.vault import Vault, VaultStats, open_stored

__all__ = [
    "PLAINTEXT_FIELDS",
    "AlpacaKeys",
    "AuthKind",
    "CloudKmsKek",
    "Credentials",
    "KekCounts",
    "LocalKek",
    "MeteredKek",
    "OAuthToken",
    "SealedForm",
    "Vault",
    "VaultStats",
    "auth_of",
    "hint_of",
    "is_sealed",
    "kek_for",
    "open_stored",
    "parse_plaintext",
]
