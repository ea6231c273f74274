"""One style everywhere (ruff.toml: `ruff format`, `ruff check`, lines of 110) and type hints on every
public function of the package, so a reader and an editor know what each takes and gives."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREES = ["."]  # what README says to run: the package, tests, bench, scripts and the config files


def _ruff() -> str:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.fail("ruff is missing: pip install -e '.[test]' installs it")
    return exe


def test_the_code_is_formatted():
    done = subprocess.run([_ruff(), "format", "--check", *TREES], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout[-3000:] + done.stderr[-2000:]


def test_the_code_passes_the_linter():
    done = subprocess.run([_ruff(), "check", *TREES], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _unhinted(path: Path, base: Path = ROOT) -> list:
    """Public functions and methods of ``path`` with a parameter or return type missing."""
    found = []

    def visit(body, prefix: str, public: bool):
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, prefix + node.name + ".", public and not node.name.startswith("_"))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not public or (node.name.startswith("_") and node.name != "__init__"):
                    continue
                a = node.args
                params = a.posonlyargs + a.args + a.kwonlyargs
                if prefix and params and params[0].arg in ("self", "cls"):
                    params = params[1:]
                missing = [p.arg for p in params if p.annotation is None]
                missing += [
                    f"*{p.arg}" for p in (a.vararg, a.kwarg) if p is not None and p.annotation is None
                ]
                if node.returns is None and node.name != "__init__":
                    missing.append("return")
                if missing:
                    found.append(
                        f"{path.relative_to(base)}:{node.lineno} {prefix}{node.name}: {', '.join(missing)}"
                    )

    visit(ast.parse(path.read_text()).body, "", True)
    return found


def test_every_public_function_has_type_hints():
    missing = [m for f in sorted((ROOT / "nvr_cli").rglob("*.py")) for m in _unhinted(f)]
    assert not missing, f"{len(missing)} without hints:\n" + "\n".join(missing[:40])


def test_the_hint_check_sees_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def shown(a, b: int):\n    pass\n\n\ndef _private(a):\n    pass\n\n\n"
        "class Public:\n    def method(self, x: int) -> None:\n        pass\n\n"
        "    def __init__(self, y):\n        pass\n"
    )
    found = _unhinted(sample, tmp_path)
    assert [f.split(" ", 1)[1] for f in found] == ["shown: a, return", "Public.__init__: y"]
