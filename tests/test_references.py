"""Every dotted name of the harness (and of the analysis) that the README, the Makefile and the code's own
docstrings and messages give (`harness.store.runs.RunStore`, `python -m harness.sweep.plan`) names something
that exists: a module moved or a function renamed leaves no stale pointer behind."""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\.fig_(NAME)?$")  # `analysis.fig_$*`, `analysis.fig_NAME`: a figure script, any
NAME = re.compile(r"\b(?:harness|analysis)(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def text_of(path: Path) -> str:
    """A file's text, less the README's table of where names moved from (it names the old ones on purpose)."""
    text = path.read_text()
    if path.name == "README.md" and "| before | now |" in text:
        start = text.index("| before | now |")
        text = text[:start] + text[text.index("\n\n", start) :]
    return text


def resolves(ref: str) -> bool:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_harness_name_in_docs_and_code_exists():
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "data" / "README.md"]
    files += sorted((ROOT / "harness").rglob("*.py")) + sorted((ROOT / "analysis").glob("*.py"))
    files += sorted((ROOT / "experiments").glob("*.py"))
    stale = sorted(
        f"{f.relative_to(ROOT)}: {ref}"
        for f in files
        if f.exists()
        for ref in set(NAME.findall(text_of(f)))
        if not resolves(ref) and not PLACEHOLDER.search(ref)
    )
    assert not stale, "\n".join(stale)


def test_every_harness_file_path_in_docs_and_code_exists():
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "data" / "README.md"]
    files += sorted((ROOT / "harness").rglob("*.py")) + sorted((ROOT / "analysis").glob("*.py"))
    paths = {m for f in files if f.exists() for m in re.findall(r"\bharness/[\w/]*\.py\b", text_of(f))}
    assert paths and not sorted(p for p in paths if not (ROOT / p).is_file())


def test_the_check_finds_a_stale_name():
    assert resolves("harness.store.runs.RunStore") and resolves("harness.sweep.plan")
    assert not resolves("harness.store.RunStore") and not resolves("harness.plan.macs")
