"""Packer variables from layers, later wins (``invoke vars``).

``vars/defaults.json`` -> ``vars/os/<profile>.json`` -> the environment (CAPV's VSPHERE_*
names) -> ``--var-file`` files in order -> ``--set KEY=VALUE``. The merged result is checked by
``ovapipe.validators.vars``; every problem is reported at once, naming the layer it came from.
Secrets (sensitive template variables) are never written: Packer gets them as PKR_VAR_* in its
own environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ovapipe import bounded, config, hardware
from ovapipe.errors import ConfigError
from ovapipe.files import read_input_text, write_json
from ovapipe.paths import REPO_ROOT, VARS_DIR
from ovapipe.runs import kube_name
from ovapipe.template import Template, read_template, template_dir

DEFAULTS_FILE: Final = VARS_DIR / "defaults.json"
PROFILES_DIR: Final = VARS_DIR / "os"
SCHEMA_FILE: Final = VARS_DIR / "schema.json"
DEFAULT_PROFILE: Final = "ubuntu-2004-efi"

# A profile file's own settings (not Packer variables) sit under this key.
PROFILE_META_KEY: Final = "ovapipe"

SITE_VAR_FILES_KEY: Final = "var_files"
SET_LAYER: Final = "--set"
ENV_LAYER: Final = "environment"

# Environment variable (CAPV's name, from ovapipe.config) -> template variable.
ENV_VARIABLES: Final[dict[str, str]] = {
    config.ENV_SERVER: "vcenter_server",
    config.ENV_USERNAME: "username",
    config.ENV_PASSWORD: "password",
    config.ENV_INSECURE: "insecure_connection",
    config.ENV_DATACENTER: "datacenter",
    config.ENV_CLUSTER: "cluster",
    config.ENV_RESOURCE_POOL: "resource_pool",
    config.ENV_DATASTORE: "datastore",
    config.ENV_NETWORK: "network",
    config.ENV_FOLDER: "folder",
}
ENV_NAME_OF: Final[dict[str, str]] = {var: env for env, var in ENV_VARIABLES.items()}

PACKER_VARS_FILE: Final = "packer-vars.json"
IMAGE_BUILDER_VARS_FILE: Final = "image-builder-vars.json"
FORMATS: Final = ("packer", "image-builder")

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Layer:
    """One source of values; ``name`` is what error messages call it (a file path, --set...)."""

    name: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    template: str
    gpu: bool
    distro_name: str = ""
    distro_version: str = ""


@dataclass(frozen=True)
class ResolvedVars:
    """The checked result. ``values`` holds no secret; ``secrets`` never reaches a file."""

    profile: Profile
    template: Template
    values: dict[str, Any]
    sources: dict[str, str]
    secrets: dict[str, str] = field(repr=False)

    def packer_vars(self) -> dict[str, Any]:
        return dict(sorted(self.values.items()))

    def packer_env(self) -> dict[str, str]:
        """Only for the environment of the packer process."""
        return {f"PKR_VAR_{name}": value for name, value in sorted(self.secrets.items())}

    def secrets_env(self) -> dict[str, str]:
        """The secrets under their CAPV environment names (VSPHERE_PASSWORD)."""
        return {ENV_NAME_OF[k]: v for k, v in self.secrets.items() if k in ENV_NAME_OF}

    def image_builder_vars(self) -> dict[str, str]:
        return image_builder_vars(self.values)


def display_name(path: Path) -> str:
    """Files of the repository by their repository path, others as the user gave them."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_layer(path: Path, name: str | None = None) -> Layer:
    """Read one JSON layer; errors name the file and, for bad JSON, the line and column."""
    name = name or display_name(path)
    text = read_input_text(path, name)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen[key] = value
        return seen

    try:
        data = bounded.load_json(text, name, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{name}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}: each variable may appear once") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}: expected a JSON object of variables, got {type(data).__name__}"
        )
    return Layer(name, data)


def load_profile(name: str) -> tuple[Profile, Layer]:
    path = PROFILES_DIR / f"{name}.json"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.json"))) or "none"
        raise ConfigError(f"profile '{name}' not found in vars/os/; available: {available}")
    layer = load_layer(path)
    values = dict(layer.values)
    meta = values.pop(PROFILE_META_KEY, {})
    if not isinstance(meta, dict) or not isinstance(meta.get("template", name), str):
        raise ConfigError(
            f"{layer.name}: '{PROFILE_META_KEY}' must be an object like "
            '{"template": "ubuntu-2004-efi", "gpu": true}'
        )
    profile = Profile(
        name, path, meta.get("template", name), bool(meta.get("gpu", False)),
        str(meta.get("distro_name", "")), str(meta.get("distro_version", "")),
    )
    return profile, Layer(layer.name, values)


def site_var_files(settings: Mapping[str, Any]) -> list[str]:
    """invoke.yaml's ``ovapipe.var_files``: the site's var files, layered before --var-file."""
    files = settings.get(SITE_VAR_FILES_KEY) or []
    if isinstance(files, str) or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"invoke.yaml: ovapipe.{SITE_VAR_FILES_KEY} must be a list of file "
                          f"paths, e.g. [vars/site/mysite.json]; got {files!r}")
    return list(files)


def env_layer(env: Mapping[str, str]) -> Layer:
    values: dict[str, Any] = {}
    for env_name, key in ENV_VARIABLES.items():
        raw = env.get(env_name)
        if not raw:
            continue
        if key == "vcenter_server":
            host, port = config.split_server(raw)
            values[key] = host if port == 443 else f"{host}:{port}"
        elif key == "insecure_connection":
            try:
                values[key] = config.parse_bool(raw)
            except ValueError as exc:
                raise ConfigError(f"{env_name}={raw!r}: {exc}") from None
        else:
            values[key] = raw
    return Layer(ENV_LAYER, values)


def parse_set(item: str) -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE); the value may contain '=' and be empty."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not _KEY_RE.match(key):
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set cpus=4")
    return key, value


def coerce(raw: str, schema: Mapping[str, Any], key: str = "") -> Any:
    """Type a --set value by its schema property; ValueError says what was expected."""
    kind = schema.get("type", "string")
    text = raw.strip()
    if key == "vmx_version" and text.lower().startswith("vmx-"):
        return hardware.parse_esxi_vmx(text)
    if kind == "integer":
        try:
            return int(text, 10)
        except ValueError:
            raise ValueError("expected an integer") from None
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        return config.parse_bool(text)
    if kind == "array":
        if text.startswith("["):
            try:
                value = bounded.load_json(text, f"--set {key or 'value'}")
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON list: {exc.msg}") from None
            if not isinstance(value, list):
                raise ValueError("expected a JSON list")
            return value
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def set_layer(items: Sequence[str], schema: Mapping[str, Any]) -> tuple[Layer, list[str]]:
    """--set items typed by the schema; returns the layer and the problems found."""
    properties = schema.get("properties", {})
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in items:
        try:
            key, raw = parse_set(item)
        except ConfigError as exc:
            problems.append(exc.message)
            continue
        try:
            values[key] = coerce(raw, properties.get(key, {}), key)
        except ValueError as exc:
            problems.append(f"--set {key}={raw}: {exc}")
    return Layer(SET_LAYER, values), problems


def load_schema() -> dict[str, Any]:
    """vars/schema.json with the firmware names and oldest vmx filled in from ovapipe.hardware."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema["properties"]["firmware"]["enum"] = list(hardware.FIRMWARES)
    schema["properties"]["vmx_version"]["enum"] = list(hardware.ESXI_VMX_VERSIONS)
    return schema


def merge(layers: Sequence[Layer]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            values[key] = value
            sources[key] = layer.name
    return values, sources


def resolve(
    profile: str = DEFAULT_PROFILE,
    var_files: Sequence[str | Path] = (),
    sets: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ResolvedVars:
    """Merge and check all layers; a ConfigError lists every problem found."""
    from ovapipe.validators.vars import validate_vars

    env = os.environ if env is None else env
    schema = load_schema()
    problems: list[str] = []
    layers: list[Layer] = []

    def try_load(loader: Any, *args: Any) -> None:
        try:
            layers.append(loader(*args))
        except ConfigError as exc:
            problems.append(exc.message)

    try_load(load_layer, DEFAULTS_FILE)
    the_profile, profile_layer = load_profile(profile)
    layers.append(profile_layer)
    layers.append(env_layer(env))
    for var_file in var_files:
        try_load(load_layer, Path(var_file), str(var_file))
    sets_layer, set_problems = set_layer(sets, schema)
    problems.extend(set_problems)
    layers.append(sets_layer)

    template = read_template(template_dir(the_profile.template))
    values, sources = merge(layers)
    if sources.get("vm_name") == profile_layer.name and "kubernetes_version" in values:
        # The profile names the OS (<os>-kube); the image carries its Kubernetes version too.
        values["vm_name"] = kube_name(str(values["vm_name"]), str(values["kubernetes_version"]))
        sources["vm_name"] = f"{profile_layer.name} + kubernetes_version"
    report = validate_vars(
        layers,
        values,
        sources,
        template=template,
        schema=schema,
        profile=the_profile.name,
        gpu=the_profile.gpu,
        complete=not problems,
    )
    problems.extend(finding.message for finding in report.errors)
    if problems:
        count = len(problems)
        raise ConfigError(
            f"invalid variables ({count} problem{'s' if count > 1 else ''}):\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )
    secrets = {k: str(v) for k, v in values.items() if k in template.secrets}
    public = {k: v for k, v in values.items() if k not in template.secrets}
    public_sources = {k: v for k, v in sources.items() if k in public}
    return ResolvedVars(the_profile, template, public, public_sources, secrets)


# ovapipe variable -> image-builder's name (images/capi/packer/ova: vsphere.json and
# packer-node.json). ISO, boot and VM-name settings stay out: image-builder takes those from
# its own OS files.
IMAGE_BUILDER_NAMES: Final[dict[str, str]] = {
    "vcenter_server": "vcenter_server",
    "username": "username",
    "insecure_connection": "insecure_connection",
    "datacenter": "datacenter",
    "cluster": "cluster",
    "host": "host",
    "resource_pool": "resource_pool",
    "datastore": "datastore",
    "network": "network",
    "folder": "folder",
    "vmx_version": "vmx_version",
    "firmware": "firmware",
    "cpus": "cpu",
    "memory": "memory",
    "disk_size": "disk_size",
    "disk_thin_provisioned": "disk_thin_provisioned",
    "guest_os_type": "vsphere_guest_os_type",
}


# pkgs.k8s.io names its packages VERSION-REVISION; 1.1 is the revision of a release's first build.
PKGS_K8S_DEB_REVISION: Final = "1.1"


def image_builder_vars(values: Mapping[str, Any]) -> dict[str, str]:
    """The same settings under image-builder's names, as strings (for PACKER_VAR_FILES)."""
    out: dict[str, str] = {"convert_to_template": "false"}
    for key, name in IMAGE_BUILDER_NAMES.items():
        if key not in values:
            continue
        value = values[key]
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if "kubernetes_version" in values:
        version = str(values["kubernetes_version"]).removeprefix("v")
        out["kubernetes_semver"] = f"v{version}"
        out["kubernetes_series"] = "v" + version.rsplit(".", 1)[0]
        # Without these image-builder installs its own default kubelet under the name asked for.
        out["kubernetes_deb_version"] = f"{version}-{PKGS_K8S_DEB_REVISION}"
        out["kubernetes_rpm_version"] = version
        out["kubernetes_source_type"] = "pkg"
        out["kubernetes_cni_source_type"] = "pkg"
    if "containerd_version" in values:
        out["containerd_version"] = str(values["containerd_version"])
    if "cni_version" in values:
        out["kubernetes_cni_semver"] = "v" + str(values["cni_version"]).removeprefix("v")
    return dict(sorted(out.items()))


def write_vars(resolved: ResolvedVars, out_dir: Path, fmt: str = "packer") -> Path:
    """Write packer-vars.json (or image-builder-vars.json); never a secret."""
    if fmt == "packer":
        path = out_dir / PACKER_VARS_FILE
        write_json(path, resolved.packer_vars())
    elif fmt == "image-builder":
        path = out_dir / IMAGE_BUILDER_VARS_FILE
        write_json(path, resolved.image_builder_vars())
    else:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return path


def describe_resolved(resolved: ResolvedVars, written: Path) -> str:
    """What `invoke vars` prints: the file, then each key with the layer it came from."""
    lines = [f"wrote {written} (profile {resolved.profile.name}, "
             f"template packer/{resolved.template.name})"]
    width = max((len(k) for k in resolved.values), default=0)
    for key, value in resolved.packer_vars().items():
        lines.append(f"  {key:<{width}}  {json.dumps(value)}  ({resolved.sources[key]})")
    for key in sorted(resolved.secrets):
        lines.append(f"  {key:<{width}}  (secret: from the environment, not written)")
    return "\n".join(lines)
