"""`scripts/bench_table.py` renders the bench JSON into docs/performance.md's marked tables, and
the committed doc holds exactly the rendering of the committed JSON."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import bench_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_JSON = ROOT / "docs" / "bench-cpu-2core.json"
DOC = ROOT / "docs" / "performance.md"


@pytest.fixture(scope="module")
def rows():
    return json.loads(BENCH_JSON.read_text())


def test_the_performance_doc_holds_the_rendered_tables_of_the_bench_json(rows):
    doc = DOC.read_text()
    for name in bench_table.TABLES:
        assert f"<!-- bench_table {name} -->" in doc and f"<!-- /bench_table {name} -->" in doc
    assert bench_table.fill(doc, bench_table.render(rows)) == doc, (
        "docs/performance.md's tables are stale: run python scripts/bench_table.py "
        "docs/bench-cpu-2core.json --write docs/performance.md")


def test_the_step_table_has_one_line_per_jaxnet_configuration(rows):
    lines = bench_table.step_table(rows).splitlines()
    configs = {(r["batch"], r["optimizer"], r["dropout"], r["grad"]) for r in rows
               if r.get("impl") == "jaxnet" and r.get("work") == "step"}
    assert len(lines) == 2 + len(configs) == 26
    # batch 50, adam, no dropout, manual: shuffled epoch, fixed step, ..., compile seconds
    assert "| 50 | adam | 0.0 | manual | **1287** | 1396 | 1015 | 1006 | 1251 |" in lines[3]


def test_write_replaces_the_marked_lines_only_and_check_agrees(rows, tmp_path, capsys):
    doc = tmp_path / "perf.md"
    prose = "# Speed\n\nSome words.\n\n"
    doc.write_text(prose + "<!-- bench_table sweep -->\n| stale |\n<!-- /bench_table sweep -->\n"
                   "\nMore words.\n")
    with pytest.raises(SystemExit, match="differ"):
        bench_table.main([str(BENCH_JSON), "--check", str(doc)])
    bench_table.main([str(BENCH_JSON), "--write", str(doc)])
    text = doc.read_text()
    assert text == (prose + "<!-- bench_table sweep -->\n\n" + bench_table.sweep_table(rows)
                    + "\n\n<!-- /bench_table sweep -->\n\nMore words.\n")
    bench_table.main([str(BENCH_JSON), "--check", str(doc)])  # current: returns, no exit
    bench_table.main([str(BENCH_JSON), "--write", str(doc)])
    assert doc.read_text() == text
    assert "already up to date" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("# no markers\n", "no '<!-- bench_table NAME -->'"),
    ("<!-- bench_table stepz -->\n<!-- /bench_table stepz -->\n", "unknown bench_table marker(s) stepz"),
])
def test_a_doc_without_known_markers_is_refused(text, message, rows):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bench_table.fill(text, bench_table.render(rows))
