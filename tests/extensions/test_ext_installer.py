"""Installing from a git URL (a local bare repository over file://, no network), and the network-exposure rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modules.cli import LaunchOptions
from modules.extensions.host import ExtensionHost
from modules.extensions.installer import InstallFailed, InstallRefused, folder_name_from_url, install_from_git
from modules.extensions.loader import ExtensionRoot, ExtensionState

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]


def make_bare_repo(tmp_path: Path, name: str, install_py: str) -> str:
    """A bare repository holding one extension; returns its file:// URL."""
    work = tmp_path / "src" / name
    (work / "scripts").mkdir(parents=True)
    (work / "scripts" / "main.py").write_text("def register(ext):\n    pass\n")
    (work / "metadata.ini").write_text("[Extension]\nVersion = 0.3\nApi = 1\n")
    (work / "install.py").write_text(install_py)
    subprocess.run([*GIT, "init", "-q", str(work)], check=True)
    subprocess.run([*GIT, "-C", str(work), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(work), "commit", "-q", "-m", "init"], check=True)
    bare = tmp_path / "remote" / f"{name}.git"
    subprocess.run([*GIT, "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare.as_uri()


MARKER_INSTALL = "from pathlib import Path\nPath('installed.txt').write_text('ok')\nprint('installing deps')\n"


def test_install_clones_runs_install_py_and_lists_it(tmp_path, ext_root):
    url = make_bare_repo(tmp_path, "sd-webui-demo", MARKER_INSTALL)
    host = ExtensionHost([ExtensionRoot(ext_root)], installs_allowed=True)
    host.load()
    info = host.install(url)
    folder = ext_root / "sd-webui-demo"
    assert (folder / "scripts" / "main.py").is_file() and (folder / "installed.txt").read_text() == "ok"
    assert info.name == "sd-webui-demo" and info.state == ExtensionState.PENDING.value and info.version == "0.3"
    assert info.remote == url and info.commit and len(info.commit) == 40
    assert not [p for p in ext_root.iterdir() if p.name.startswith(".")]  # no temporary clone left
    again = ExtensionHost([ExtensionRoot(ext_root)])
    again.load()
    assert again.get("sd-webui-demo").loaded


def test_install_refused_when_listening_on_the_network(tmp_path, ext_root):
    url = make_bare_repo(tmp_path, "demo", MARKER_INSTALL)
    exposed = LaunchOptions(listen=True, data_dir=tmp_path)
    assert not exposed.extension_installs_allowed
    assert LaunchOptions(listen=True, enable_insecure_extension_access=True).extension_installs_allowed
    host = ExtensionHost.for_launch(exposed)
    with pytest.raises(InstallRefused, match="--enable-insecure-extension-access"):
        host.install(url)
    assert not (tmp_path / "extensions" / "demo").exists()


def test_failing_install_py_removes_the_clone(tmp_path, ext_root):
    url = make_bare_repo(tmp_path, "fails", "import sys\nprint('no compiler')\nsys.exit(3)\n")
    with pytest.raises(InstallFailed, match="exit status 3") as caught:
        install_from_git(url, ext_root, allowed=True)
    assert "no compiler" in str(caught.value)
    assert list(ext_root.iterdir()) == []


def test_bad_url_and_existing_folder(tmp_path, ext_root):
    with pytest.raises(InstallFailed, match="git clone"):
        install_from_git((tmp_path / "nothing.git").as_uri(), ext_root, allowed=True)
    (ext_root / "taken").mkdir()
    with pytest.raises(InstallRefused, match="already exists"):
        install_from_git("file:///x/taken.git", ext_root, allowed=True)
    assert folder_name_from_url("https://github.com/user/sd-webui-foo.git/") == "sd-webui-foo"
    assert folder_name_from_url("git@github.com:user/bar.git") == "bar"


def test_installs_go_to_the_data_dir_and_clones_are_not_builtin(tmp_path):
    from modules.extensions.host import BUILTIN_ROOT
    from modules.paths import REPO_ROOT

    same = ExtensionHost.for_launch(LaunchOptions(data_dir=REPO_ROOT))
    assert [root.path for root in same.roots] == [BUILTIN_ROOT] and same.install_dir == BUILTIN_ROOT
    shipped = tmp_path / "builtin"
    for name in ("shipped", "cloned"):
        (shipped / name / "scripts").mkdir(parents=True)
        (shipped / name / "scripts" / "main.py").write_text("def register(ext):\n    pass\n")
    (shipped / "cloned" / ".git").mkdir()
    host = ExtensionHost([ExtensionRoot(shipped, builtin=True)])
    host.load()
    assert [(r.name, r.builtin) for r in host.records] == [("cloned", False), ("shipped", True)]
