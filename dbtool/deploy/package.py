"""``dbtool deploy package``: a Lambda deployment zip that runs ``dbtool.deploy.handler``.

It holds dbtool (without the command line), the runtime dependencies the handler imports as wheels
built for Lambda (psycopg's binary wheel for the chosen architecture and Python), and the project's
``db/`` and ``dbtool.toml`` at the root, which is the function's task root. boto3 and botocore are
left out (the Lambda runtime has them), and so are click and rich (the handler never imports them).
The zip is reproducible: sorted entries, fixed timestamps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dbtool.errors import DbtoolError

ARCHITECTURES = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
}
REQUIREMENTS = ("psycopg[binary]>=3.1,<4", "python-dotenv>=1.0")
LEFT_OUT = ("cli", "__pycache__")
PROJECT_FILES = ("db", "dbtool.toml")
FIXED_TIME = (2020, 1, 1, 0, 0, 0)
# What the package was built for, read by the CDK construct (dbtool.cdk) to choose the function's runtime.
MANIFEST = "dbtool-package.json"
# Console scripts (pip's bin/) carry the builder's interpreter path in their shebang: left out, and so are
# their lines in a wheel's RECORD, so that builds on different machines give the same bytes.
SCRIPTS = "bin"


class PackageError(DbtoolError):
    """The package could not be built."""


@dataclass(frozen=True)
class Package:
    path: Path
    bytes: int
    files: int


def build_package(
    root: Path,
    out: Path,
    *,
    arch: str = "x86_64",
    python: str = "3.12",
    find_links: Path | None = None,
) -> Package:
    """Write the zip to ``out``; with ``find_links`` the wheels come from that directory only (offline)."""
    if arch not in ARCHITECTURES:
        raise PackageError(f"unknown architecture {arch!r}", "use x86_64 or arm64")
    with tempfile.TemporaryDirectory(prefix="dbtool-package-") as work:
        staging = Path(work)
        _install(staging, arch, python, find_links)
        _copy_dbtool(staging / "dbtool")
        for name in PROJECT_FILES:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            elif source.is_file():
                shutil.copy2(source, staging / name)
        shutil.rmtree(staging / SCRIPTS, ignore_errors=True)
        _forget_scripts(staging)
        (staging / MANIFEST).write_text(json.dumps({"python": python, "architecture": arch}, sort_keys=True) + "\n")
        count = _zip(staging, out)
    return Package(out, out.stat().st_size, count)


def _install(staging: Path, arch: str, python: str, find_links: Path | None) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(staging), "--only-binary=:all:"]
    command += [f"--platform={platform}" for platform in ARCHITECTURES[arch]]
    command += ["--python-version", python, "--implementation", "cp"]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    result = subprocess.run([*command, *REQUIREMENTS], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise PackageError(f"could not get Lambda wheels for Python {python} on {arch}: {last}")


def _copy_dbtool(destination: Path) -> None:
    import dbtool

    source = Path(dbtool.__file__).parent
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*LEFT_OUT, "*.pyc"))


def _forget_scripts(staging: Path) -> None:
    """Drop the RECORD lines of files installed outside the target (the scripts: ``../../bin/…``)."""
    for record in staging.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(line for line in lines if not line.startswith("../")))


def _zip(staging: Path, out: Path) -> int:
    paths = sorted(path for path in staging.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in paths:
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), FIXED_TIME)
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return len(paths)
