"""One project context per process: dbtool.toml and .env read once, one AWS client per service.

Counted from outside, with a Python audit hook on ``open`` (nothing of dbtool's is patched): the files
a command opens, and the botocore service models it loads (one load per client built).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Server
from tests.helpers import dbtool

_opened: list[str] | None = None


def _hook(event: str, args: tuple) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | Path):
        _opened.append(str(args[0]))


sys.addaudithook(_hook)


@contextmanager
def opened() -> Iterator[list[str]]:
    """The paths opened inside the block."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def test_up_reads_dbtool_toml_and_dotenv_once(local: Server, project: Path, monkeypatch) -> None:
    monkeypatch.delenv("CONNECTION_URL")
    (project / ".env").write_text(f"CONNECTION_URL={local.url()}\nSTAGING_URL={local.url()}\n")
    (project / "dbtool.toml").write_text(
        '[extensions]\npg_trgm = "1.6"\n\n[targets.staging]\nurl_env = "STAGING_URL"\n'
    )
    with opened() as paths:
        run = dbtool("up", "--seed")
    assert run.code == 0, run.all
    assert paths.count(str(project / "dbtool.toml")) == 1, paths
    assert paths.count(str(project / ".env")) == 1, paths
    with opened() as paths:
        assert dbtool("migrate", "status", "staging").code == 0
    assert paths.count(str(project / "dbtool.toml")) == 1, paths
    assert paths.count(str(project / ".env")) == 1, paths


def test_setup_through_the_data_api_builds_one_client_per_service(data_api, project: Path) -> None:
    with opened() as paths:
        run = dbtool("setup", "prod", "--yes")
    assert run.code == 0, run.all
    models = [path for path in paths if path.endswith(("service-2.json", "service-2.json.gz"))]
    assert sum("rds-data" in path for path in models) == 1, models
    assert sum("secretsmanager" in path for path in models) <= 1, models
