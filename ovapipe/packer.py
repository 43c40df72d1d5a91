"""Running Packer: find it, check its version, validate, build with the log streamed.

Secrets reach Packer only through PKR_VAR_* in its process environment, never its argv.
``packer build`` runs in its own process group so that a Ctrl-C reaches ovapipe first: ovapipe
then sends SIGINT to Packer's group and waits while Packer cleans up what it created.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from ovapipe.errors import BuildError, ConfigError
from ovapipe.paths import PACKER_DIR

PACKER_ENV: Final = "OVAPIPE_PACKER"  # another packer binary than the one on PATH
MIN_VERSION: Final = (1, 6, 6)
# Packer 1.7 moved vsphere-iso into a plugin declared with required_plugins (packer init).
PLUGINS_FROM: Final = (1, 7, 0)
PLUGINS_DIR: Final = PACKER_DIR / "plugins"
# Seconds Packer gets to clean up after SIGINT before it is killed (a second Ctrl-C kills it
# at once); ovapipe then deletes the build VM itself, and the next run removes what is left.
INTERRUPT_GRACE: Final = 60.0
# Seconds a whole ``packer build`` may take (OVAPIPE_PACKER_TIMEOUT); its own waits (boot,
# shutdown_timeout) are bounded by the template, this bounds the stage.
BUILD_TIMEOUT_ENV: Final = "OVAPIPE_PACKER_TIMEOUT"
BUILD_TIMEOUT: Final = 4 * 3600.0

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class PackerInfo:
    path: Path
    version: str

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        match = _VERSION_RE.search(self.version)
        if not match:
            return (0, 0, 0)
        major, minor, patch = match.groups()
        return int(major), int(minor), int(patch)

    @property
    def needs_plugins(self) -> bool:
        return self.version_tuple >= PLUGINS_FROM


def find_packer(env: Mapping[str, str] | None = None) -> PackerInfo:
    env = os.environ if env is None else env
    chosen = env.get(PACKER_ENV)
    found = shutil.which(chosen or "packer", path=env.get("PATH"))
    if not found and chosen:
        raise ConfigError(
            f"packer not found: {PACKER_ENV}={chosen!r} is not an executable file (nor a command "
            f"on PATH): point {PACKER_ENV} at the packer binary, or unset it to use PATH"
        )
    if not found:
        raise ConfigError(
            "packer not found ('packer' is not on PATH): install it (Debian: apt-get install "
            f"packer) or point {PACKER_ENV} at the binary"
        )
    try:
        result = subprocess.run(
            [found, "version"], capture_output=True, text=True, timeout=60,
            env={**env, "CHECKPOINT_DISABLE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{found} version: {exc}") from None
    match = _VERSION_RE.search(result.stdout)
    if result.returncode != 0 or not match:
        answer = (result.stdout.strip() or result.stderr.strip())[-500:]
        raise BuildError(
            f"{found} version: unexpected answer {answer!r} (exit {result.returncode})"
        )
    info = PackerInfo(Path(found), match.group(0))
    if info.version_tuple < MIN_VERSION:
        raise ConfigError(
            f"packer {info.version} at {found} is too old: ovapipe's templates need "
            f"{'.'.join(map(str, MIN_VERSION))} or newer"
        )
    return info


def packer_env(secrets: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a packer process: ``secrets`` as PKR_VAR_*, no update check."""
    env = dict(os.environ if base is None else base)
    env.update(secrets)
    env["CHECKPOINT_DISABLE"] = "1"
    return env


def _run(argv: Sequence[str], env: Mapping[str, str], what: str, timeout: float) -> str:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, env=dict(env), timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise BuildError(f"{what}: {exc}") from None
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{output}")
    return output


def init_plugins(info: PackerInfo, env: Mapping[str, str]) -> None:
    """Current Packer: install the plugins declared in packer/plugins (no-op for 1.6.x)."""
    if info.needs_plugins:
        _run([str(info.path), "init", str(PLUGINS_DIR)], env, "packer init", 900)


def plugin_versions(info: PackerInfo, env: Mapping[str, str]) -> dict[str, str]:
    """The builder plugins this Packer uses, with versions (for build.json)."""
    if not info.needs_plugins:
        return {"vsphere-iso": f"built into packer {info.version}"}
    try:
        listing = _run([str(info.path), "plugins", "installed"], env, "packer plugins", 60)
    except BuildError as exc:
        return {"vsphere": f"unknown ({exc})"}
    found: dict[str, str] = {}
    for line in listing.splitlines():
        # .../github.com/hashicorp/vsphere/packer-plugin-vsphere_v1.2.4_x5.0_linux_amd64
        name = Path(line.strip()).name
        match = re.match(r"packer-plugin-([a-z0-9-]+)_v([0-9][^_]*)", name)
        if match:
            found[match.group(1)] = match.group(2)
    return found or {"vsphere": "unknown (packer plugins installed listed none)"}


def validate(info: PackerInfo, template: Path, var_file: Path, env: Mapping[str, str]) -> None:
    # TMPDIR: the folder of the var file, which the caller removes (no packer_to_cdrom* left).
    _run(
        [str(info.path), "validate", f"-var-file={var_file}", str(template)],
        {**env, "TMPDIR": str(var_file.parent)}, f"packer validate {template.name}", 600,
    )


def _scrub(line: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            line = line.replace(secret, "<sensitive>")
    return line


class _KillNow(Exception):
    """A second Ctrl-C/SIGTERM while Packer cleans up."""


@contextlib.contextmanager
def _second_interrupt_kills(notice: IO[str]) -> Iterator[None]:
    """While Packer cleans up, another Ctrl-C/SIGTERM stops waiting for it: it is killed, and
    ovapipe's own cleanup (bounded) deletes the build VM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def kill_now(_signum: int, _frame: object) -> None:
        print("ovapipe: interrupted again: killing Packer now; its build VM and seed ISO may "
              "be left if ovapipe's own cleanup cannot finish (the next build removes them)",
              file=notice, flush=True)
        raise _KillNow

    previous = {sig: signal.signal(sig, kill_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def build_timeout(env: Mapping[str, str]) -> float:
    text = env.get(BUILD_TIMEOUT_ENV)
    if not text:
        return BUILD_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{BUILD_TIMEOUT_ENV}={text!r}: expected seconds, e.g. 14400") from None
    if seconds <= 0:
        raise ConfigError(f"{BUILD_TIMEOUT_ENV}={text!r}: must be more than 0 seconds")
    return seconds


def _stop(process: subprocess.Popen[str], echo: IO[str], why: str) -> None:
    """SIGINT to Packer's group, wait for its cleanup (bounded), SIGKILL if it does not end."""
    with _second_interrupt_kills(echo):
        echo.write(f"ovapipe: {why}: stopping Packer (SIGINT) and waiting for its cleanup\n")
        echo.flush()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=INTERRUPT_GRACE)
        except (subprocess.TimeoutExpired, _KillNow):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _last_error(lines: Sequence[str]) -> str:
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("-->") or "errored" in text:
            return text.removeprefix("-->").strip()
    return lines[-1].strip() if lines else "no output"


def build(
    info: PackerInfo,
    template: Path,
    var_file: Path,
    env: Mapping[str, str],
    log_path: Path,
    *,
    secrets: Sequence[str] = (),
    on_error: str = "cleanup",
    echo: IO[str] | None = None,
    temp_dir: Path | None = None,
    started: Callable[[int], None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """``packer build``; output goes to ``echo`` (stderr) and ``log_path`` line by line.

    Packer runs in its own process group (``started`` gets its pid = group id, for the run
    marker) with TMPDIR set to ``temp_dir``, so its seed folders (``packer_to_cdrom*``, with the
    autoinstall user-data) land in a folder the caller owns and removes. Raises BuildError
    when Packer fails or overruns OVAPIPE_PACKER_TIMEOUT, KeyboardInterrupt after Packer has
    stopped and cleaned up in response to a Ctrl-C.
    """
    echo = echo or sys.stderr
    timeout = build_timeout(env)
    if temp_dir is not None:
        env = {**env, "TMPDIR": str(temp_dir)}
    argv = [
        str(info.path), "build", "-color=false", "-timestamp-ui", f"-on-error={on_error}",
        f"-var-file={var_file}", str(template),
    ]
    tail: list[str] = []
    interrupted = False
    with log_path.open("w", encoding="utf-8") as log:
        try:
            process = subprocess.Popen(
                argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise BuildError(f"cannot start {info.path}: {exc}") from None

        def copy_output() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = _scrub(raw, secrets)
                log.write(line)
                log.flush()
                echo.write(line)
                echo.flush()
                tail.append(line)
                del tail[:-50]
                if on_line is not None:
                    on_line(line)

        reader = threading.Thread(target=copy_output, name="packer-output", daemon=True)
        reader.start()
        overran = False
        try:
            if started is not None:
                started(process.pid)
            deadline = time.monotonic() + timeout
            while reader.is_alive() and time.monotonic() < deadline:
                reader.join(timeout=0.2)
            if reader.is_alive():
                overran = True
                _stop(process, echo, f"packer build still running after {timeout:.0f} s")
        except KeyboardInterrupt:
            interrupted = True
            _stop(process, echo, "Ctrl-C")
        reader.join(timeout=30)
        returncode = process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    if interrupted:
        raise KeyboardInterrupt
    if overran:
        raise BuildError(f"packer build did not finish within {timeout:.0f} s "
                         f"({BUILD_TIMEOUT_ENV}); it was stopped (log: {log_path})")
    if returncode != 0:
        raise BuildError(
            f"packer build failed (exit {returncode}): {_last_error(tail)} (log: {log_path})"
        )
