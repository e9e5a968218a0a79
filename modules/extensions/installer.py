"""Installing an extension from a git URL (the Extensions tab's "Install from URL"), and reading git details.

Policy, following A1111:
- installing is refused when the server listens on a non-loopback address (`--listen`, `--server-name`) unless
  `--enable-insecure-extension-access` is given (`LaunchOptions.extension_installs_allowed`): whoever reaches the
  page could otherwise run code on the machine;
- `git clone` goes to a hidden temporary folder next to the target and is renamed into place only when complete;
- the extension's `install.py`, if any, runs right after the clone, with this program's Python, in the extension's
  folder (its output is returned). A failing `install.py` removes the clone again, so the install can be retried.

Difference from A1111: `install.py` runs only here, never at start-up (A1111 runs every extension's install.py at
each launch). Nothing is installed, downloaded or executed when the program starts. The new extension is loaded at
the next start.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from modules.errors import UserError

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 300
INSTALL_SCRIPT_TIMEOUT_S = 900
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class InstallRefused(UserError):
    """Installing is not allowed, or the target is unusable (message says why and what to do)."""

    http_status = 403


class InstallFailed(UserError):
    """git or install.py failed; the message carries the tail of their output."""

    http_status = 500


@dataclass(frozen=True)
class InstallOutcome:
    name: str
    path: Path
    install_output: str


def folder_name_from_url(url: str) -> str:
    """'https://host/user/sd-webui-foo.git' -> 'sd-webui-foo'."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def _git_env() -> dict[str, str]:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for credentials on a terminal


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _clone(url: str, target: Path) -> None:
    temp = target.parent / f".installing-{uuid.uuid4().hex}"
    command = ["git", "clone", "--", url, str(temp)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, env=_git_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise InstallFailed(f"Could not run git to clone {url}: {exc}") from exc
    if done.returncode != 0:
        shutil.rmtree(temp, ignore_errors=True)
        raise InstallFailed(f"git clone of {url} failed:\n{_tail(done.stderr)}")
    temp.rename(target)


def run_install_script(folder: Path) -> str:
    """Run `folder/install.py` (if present) with this Python; its output, or InstallFailed."""
    script = folder / "install.py"
    if not script.is_file():
        return ""
    try:
        done = subprocess.run([sys.executable, script.name], cwd=folder, capture_output=True, text=True,
                              timeout=INSTALL_SCRIPT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"install.py of {folder.name} could not finish: {exc}") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise InstallFailed(f"install.py of {folder.name} failed (exit status {done.returncode}):\n{_tail(output)}")
    return output


def install_from_git(url: str, extensions_dir: Path, *, allowed: bool, name: str | None = None) -> InstallOutcome:
    """Clone `url` into `extensions_dir/<name>` and run its install.py; see the module doc for the rules."""
    if not allowed:
        raise InstallRefused("Installing extensions is disabled because the server is reachable from the network "
                             "(--listen or --server-name). Restart with --enable-insecure-extension-access to allow "
                             "it, or install from a local session.")
    url = url.strip()
    if not url:
        raise InstallRefused("Enter the git URL of the extension to install.")
    folder = (name or folder_name_from_url(url)).strip()
    if not _NAME_RE.match(folder):
        raise InstallRefused(f"Cannot derive a folder name from {url!r} (got {folder!r}); enter a name made of "
                             "letters, digits, '.', '_' and '-'.")
    target = extensions_dir / folder
    if target.exists():
        raise InstallRefused(f"An extension folder {target} already exists; remove it first or choose another name.")
    extensions_dir.mkdir(parents=True, exist_ok=True)
    _clone(url, target)
    try:
        output = run_install_script(target)
    except InstallFailed:
        shutil.rmtree(target, ignore_errors=True)
        raise
    log.info("Installed extension %s from %s into %s", folder, url, target)
    return InstallOutcome(folder, target, output)


def _git(folder: Path, *args: str) -> str | None:
    """The trimmed output of a read-only git command in `folder`, None when git fails or prints nothing."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              env=_git_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def git_details(folder: Path) -> tuple[str | None, str | None]:
    """(remote URL, commit hash) of a git checkout, (None, None) for plain folders or when git fails."""
    if not (folder / ".git").exists():
        return None, None
    return _git(folder, "remote", "get-url", "origin"), _git(folder, "rev-parse", "HEAD")


def git_head(folder: Path) -> tuple[str | None, int | None]:
    """(branch name, commit time in Unix seconds) of a git checkout's HEAD, (None, None) where unknown."""
    if not (folder / ".git").exists():
        return None, None
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    date = _git(folder, "log", "-1", "--format=%ct")
    return branch, int(date) if date is not None and date.isdigit() else None
