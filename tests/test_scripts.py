"""``make test`` = CI: scripts/test-prereqs.sh (golden reference, Debian packages of
scripts/test-packages.txt) run as a real process on a copy of the scripts folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not Debian")


@pytest.fixture
def repo() -> Iterator[Path]:
    """A world-readable folder with scripts/test-prereqs.sh and a fake reference folder."""
    root = Path(tempfile.mkdtemp(prefix="samurai-scripts-"))
    try:
        (root / "scripts").mkdir()
        shutil.copy(REPO_ROOT / "scripts" / "test-prereqs.sh", root / "scripts")
        (root / "reference" / "golden").mkdir(parents=True)
        (root / "reference" / "synth_weights.py").write_text("")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def prereqs(
    repo: Path, packages: str, *, as_nobody: bool = False, **env: str
) -> subprocess.CompletedProcess:
    (repo / "scripts" / "test-packages.txt").write_text(packages)
    command = [str(repo / "scripts" / "test-prereqs.sh")]
    if as_nobody and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is needed to run the script as a non-root user")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    environ = {**os.environ, "SAMURAI_REFERENCE": str(repo / "reference")}
    environ.pop("SAMURAI_SKIP_TEST_PACKAGES", None)
    environ.update(env)
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=60)


def test_missing_reference_says_where_it_belongs_and_stops_only_under_ci(repo: Path) -> None:
    proc = prereqs(repo, "", SAMURAI_REFERENCE=str(repo / "nowhere"), CI="false")
    assert proc.returncode == 0  # a user's own clone: the golden tests skip
    assert f"golden reference data is not at {repo / 'nowhere'}" in proc.stderr
    assert "../shared/reference" in proc.stderr and "SAMURAI_REFERENCE" in proc.stderr
    assert "golden tests will skip" in proc.stderr
    proc = prereqs(repo, "", SAMURAI_REFERENCE=str(repo / "nowhere"), CI="true")
    assert proc.returncode == 1
    assert "CI=true requires the reference data" in proc.stderr


@needs_dpkg
def test_installed_packages_pass_quietly(repo: Path) -> None:
    proc = prereqs(repo, "# comment line\n\nbash    # needed by ...\ncoreutils\n")
    assert (proc.returncode, proc.stderr) == (0, "")


@needs_dpkg
def test_a_missing_package_without_root_names_the_install_command(repo: Path) -> None:
    proc = prereqs(repo, "bash\nsamurai-no-such-package  # for a test\n", as_nobody=True)
    assert proc.returncode == 1, proc.stderr
    assert "not installed: samurai-no-such-package" in proc.stderr
    assert "sudo apt-get install -y samurai-no-such-package" in proc.stderr


@needs_dpkg
def test_skipping_packages_is_explicit(repo: Path) -> None:
    proc = prereqs(repo, "samurai-no-such-package\n", SAMURAI_SKIP_TEST_PACKAGES="1")
    assert proc.returncode == 0
    assert "going on without samurai-no-such-package" in proc.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_is_what_ci_runs() -> None:
    # outside any calling make (CI runs `make test`, which runs this test)
    environ = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "SAMURAI_EXTRAS=dev scripts/setup.sh",
        "scripts/test-prereqs.sh",
        "OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/python -m pytest -n 2 --dist loadgroup -q",
    ]
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line and not line.startswith("#")][-1] == "exec make test"
    packages = (REPO_ROOT / "scripts" / "test-packages.txt").read_text()
    assert "chromium" in packages.split()
