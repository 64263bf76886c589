"""The README's promises about the repository itself: its test command is the one CI runs, and
the files it links to exist."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_readme_test_command_is_the_one_ci_runs():
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.startswith("pip install -e '.[test]'")
    readme = (ROOT / "README.md").read_text()
    assert ci_command in readme.splitlines()


def test_the_readme_links_to_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = {t for t in re.findall(r"\]\(([^)#]+)\)", readme) if "://" not in t}
    assert "docs/performance.md" in targets
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"
