"""Connection settings, read once from the environment (CAPV's variable names) and invoke.yaml."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ovapipe.errors import ConfigError

# CAPV's names for the vSphere settings (clusterctl's cluster-template uses the same ones).
ENV_SERVER: Final = "VSPHERE_SERVER"
ENV_USERNAME: Final = "VSPHERE_USERNAME"
ENV_PASSWORD: Final = "VSPHERE_PASSWORD"
ENV_THUMBPRINT: Final = "VSPHERE_TLS_THUMBPRINT"
ENV_DATACENTER: Final = "VSPHERE_DATACENTER"
ENV_DATASTORE: Final = "VSPHERE_DATASTORE"
ENV_NETWORK: Final = "VSPHERE_NETWORK"
ENV_RESOURCE_POOL: Final = "VSPHERE_RESOURCE_POOL"
ENV_FOLDER: Final = "VSPHERE_FOLDER"
ENV_TEMPLATE: Final = "VSPHERE_TEMPLATE"
ENV_CLUSTER: Final = "VSPHERE_CLUSTER"
ENV_INSECURE: Final = "VSPHERE_INSECURE"
ENV_TIMEOUT: Final = "VSPHERE_TIMEOUT"
# Seconds any one vCenter/ESXi request may go without an answer (invoke.yaml: ovapipe.timeout).
DEFAULT_TIMEOUT: Final = 60.0
# Seconds a cleanup call may take: cleanups run after Ctrl-C, which must end within seconds.
CLEANUP_TIMEOUT: Final = 10.0
SECRET_ENV_NAMES: Final = (ENV_PASSWORD,)
TRUE_WORDS: Final = ("true", "yes", "on", "1")
FALSE_WORDS: Final = ("false", "no", "off", "0")


def parse_bool(text: str) -> bool:
    """'true'/'yes'/'on'/'1' or 'false'/'no'/'off'/'0' (any case); ValueError otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected true or false")


@dataclass(frozen=True)
class Connection:
    """How to reach one vCenter; the password never appears in repr or logs."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    thumbprint: str | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT  # seconds one request may wait for an answer

    @property
    def server(self) -> str:
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


def parse_timeout(text: str, source: str = ENV_TIMEOUT) -> float:
    """A request timeout in seconds (1 to 3600), from VSPHERE_TIMEOUT or invoke.yaml."""
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{source}={text!r}: expected a number of seconds, e.g. 60") from None
    if not 1 <= seconds <= 3600:
        raise ConfigError(f"{source}={text!r}: must be from 1 to 3600 seconds")
    return seconds


def split_server(server: str) -> tuple[str, int]:
    """'vc.example.com', 'vc:8443', 'https://vc/sdk', '[::1]:8989' -> (host, port)."""
    text = server.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    if not text:
        raise ConfigError(f"{ENV_SERVER} is empty: set it to the vCenter host name")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, 443
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{ENV_SERVER}={server!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def normalize_thumbprint(value: str) -> str:
    """Accept SHA-1/SHA-256 hex with or without colons; return upper-case colon form."""
    digits = value.replace(":", "").strip().upper()
    if len(digits) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in digits):
        raise ConfigError(
            f"{ENV_THUMBPRINT}={value!r}: expected a SHA-1 (or SHA-256) fingerprint in hex, "
            "e.g. 01:23:...:EF as `govc about.cert -thumbprint` prints it"
        )
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def connection_from_env(
    env: Mapping[str, str] | None = None,
    *,
    insecure: bool = False,
    prompt: bool = True,
) -> Connection:
    """Build a Connection from VSPHERE_* variables; prompt for the password on a terminal."""
    env = os.environ if env is None else env
    missing = [name for name in (ENV_SERVER, ENV_USERNAME) if not env.get(name)]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} not set: export the vCenter connection "
            f"({ENV_SERVER}, {ENV_USERNAME}, {ENV_PASSWORD}, {ENV_THUMBPRINT}); "
            "`invoke sim` prints them for the local simulator"
        )
    host, port = split_server(env[ENV_SERVER])
    password = env.get(ENV_PASSWORD)
    if password is None:
        if prompt and sys.stdin.isatty():
            password = getpass.getpass(f"vCenter password for {env[ENV_USERNAME]}@{host}: ")
        else:
            raise ConfigError(f"{ENV_PASSWORD} not set (and no terminal to ask on)")
    try:
        insecure = insecure or parse_bool(env.get(ENV_INSECURE) or "false")
    except ValueError as exc:
        raise ConfigError(f"{ENV_INSECURE}={env[ENV_INSECURE]!r}: {exc}") from None
    thumbprint_text = env.get(ENV_THUMBPRINT)
    if not thumbprint_text and not insecure:
        raise ConfigError(
            f"{ENV_THUMBPRINT} not set: pin the vCenter certificate with its SHA-1 "
            "fingerprint, or pass --insecure to skip verification (not for production)"
        )
    thumbprint = normalize_thumbprint(thumbprint_text) if thumbprint_text else None
    timeout = parse_timeout(env[ENV_TIMEOUT]) if env.get(ENV_TIMEOUT) else DEFAULT_TIMEOUT
    return Connection(host, port, env[ENV_USERNAME], password, thumbprint, insecure, timeout)


@dataclass(frozen=True)
class SiteDefaults:
    """Where things go when no flag says: invoke.yaml's ``ovapipe`` section, then VSPHERE_*."""

    datacenter: str | None
    cluster: str | None
    datastore: str | None
    network: str | None
    folder: str | None
    output: Path
    publish_concurrency: int
    pipeline_id: str | None = None  # retention deletes only templates carrying it
    library: str | None = None  # publish through this content library (upload once)
    library_datastore: str | None = None  # the library's datastore when it is created


def site_defaults(settings: Mapping[str, Any], env: Mapping[str, str] | None = None
                  ) -> SiteDefaults:
    env = os.environ if env is None else env

    def pick(key: str, env_name: str) -> str | None:
        return settings.get(key) or env.get(env_name) or None

    try:
        concurrency = int(settings.get("publish_concurrency") or 2)
    except (TypeError, ValueError):
        raise ConfigError("invoke.yaml: ovapipe.publish_concurrency must be a number") from None
    return SiteDefaults(
        datacenter=pick("datacenter", ENV_DATACENTER),
        cluster=pick("cluster", ENV_CLUSTER),
        datastore=pick("datastore", ENV_DATASTORE),
        network=pick("network", ENV_NETWORK),
        folder=pick("folder", ENV_FOLDER),
        output=Path(settings.get("output") or "output"),
        publish_concurrency=concurrency,
        pipeline_id=str(settings.get("pipeline_id") or "") or None,
        library=str(settings.get("library") or "") or None,
        library_datastore=str(settings.get("library_datastore") or "") or None,
    )


@dataclass(frozen=True)
class SigningSettings:
    """invoke.yaml ``ovapipe.signing``: how build-ova/sign-ova sign, and what publish trusts.

    The private key comes from ``key_file`` or from the variable named by ``key_env``; a key
    itself is never a setting, a flag or an argument.
    """

    certificate: Path | None = None  # PEM: the signer's certificate, then intermediates
    key_file: Path | None = None
    key_env: str | None = None
    algorithm: str = "SHA256"
    require: bool = False  # validate-ova and publish refuse unsigned or untrusted OVAs
    trust: Path | None = None  # PEM: CA certificate(s), or the pinned signer certificate(s)


def signing_settings(settings: Mapping[str, Any]) -> SigningSettings:
    section = settings.get("signing") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("invoke.yaml: ovapipe.signing must be a mapping")
    if "key" in section or "private_key" in section:
        raise ConfigError("invoke.yaml: a signing key is never a setting; use key_file or key_env")
    known = {"certificate", "key_file", "key_env", "algorithm", "require", "trust"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"invoke.yaml: ovapipe.signing.{unknown[0]} is not a setting "
                          f"(known: {', '.join(sorted(known))})")

    def path(key: str) -> Path | None:
        value = section.get(key)
        return Path(str(value)) if value else None

    require = section.get("require", False)
    if not isinstance(require, bool):
        try:
            require = parse_bool(str(require))
        except ValueError:
            raise ConfigError("invoke.yaml: ovapipe.signing.require must be true or false"
                              ) from None
    return SigningSettings(
        certificate=path("certificate"), key_file=path("key_file"),
        key_env=str(section["key_env"]) if section.get("key_env") else None,
        algorithm=str(section.get("algorithm") or "SHA256"), require=require,
        trust=path("trust"),
    )


def timeout_env(settings: Mapping[str, Any], env: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """``env`` with VSPHERE_TIMEOUT from invoke.yaml's ``ovapipe.timeout`` unless already set.

    One place for the setting: the environment wins, invoke.yaml is the site default.
    """
    merged = dict(os.environ if env is None else env)
    configured = settings.get("timeout")
    if configured is not None and not merged.get(ENV_TIMEOUT):
        parse_timeout(str(configured), "invoke.yaml ovapipe.timeout")
        merged[ENV_TIMEOUT] = str(configured)
    return merged
