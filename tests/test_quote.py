"""Docs quote results: every quoted figure equals its committed JSON, and the repository's docs are current."""
from __future__ import annotations

import json
import re

import pytest
from benchmarks import quote


def test_a_value_mark_is_filled_from_its_file_and_a_changed_file_makes_it_stale(tmp_path):
    data = tmp_path / "r.json"
    data.write_text(json.dumps({"edits": {"keep-others": {"share": 0.1234, "runs": [3, 1500]}}}))
    doc = (f"share <!--q {data} edits/keep-others/share .2f-->old<!--/q--> over "
           f"<!--q {data} edits/keep-others/runs/1 ,-->?<!--/q--> levels")
    quote.load.cache_clear()
    done = quote.render(doc)
    assert done == (f"share <!--q {data} edits/keep-others/share .2f-->0.12<!--/q--> over "
                    f"<!--q {data} edits/keep-others/runs/1 ,-->1,500<!--/q--> levels")
    assert quote.render(done) == done  # filled marks are stable
    data.write_text(json.dumps({"edits": {"keep-others": {"share": 0.5, "runs": [3, 1500]}}}))
    quote.load.cache_clear()
    assert quote.render(done) != done and "0.50" in quote.render(done)


def test_a_mark_naming_a_missing_entry_or_file_is_an_error(tmp_path):
    data = tmp_path / "r.json"
    data.write_text(json.dumps({"a": [1]}))
    quote.load.cache_clear()
    with pytest.raises(KeyError, match="no entry 'a/3'"):
        quote.render(f"<!--q {data} a/3 raw-->x<!--/q-->")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        quote.render(f"<!--q {tmp_path / 'nope.json'} a raw-->x<!--/q-->")
    with pytest.raises(KeyError, match="no quote block 'nothing'"):
        quote.render("<!--quote nothing-->\nx\n<!--/quote-->")


def test_the_edit_table_is_the_benchmark_json_row_for_row():
    quote.load.cache_clear()
    filed = quote.load(quote.EDIT)
    table = quote.edit_table()
    assert len(table) == 2 + 1 + len([n for n in quote.EDIT_ROWS if n in filed["edits"]]) + 1
    for name, row in zip([n for n in quote.EDIT_ROWS if n in filed["edits"]], table[3:]):
        e = filed["edits"][name]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{e['success']:.3f}" and cells[2] == str(e["deaths"].get("obstacle", 0))
        assert cells[4].startswith(f"{e['blindness_share']['share']:.2f}")


def test_readme_and_docs_quote_their_files_exactly():
    """Re-rendering every mark in README, docs/, benchmarks/README and zoo/README changes nothing: the figures
    there are what the committed JSON says (run ``python -m benchmarks.quote`` after a benchmark)."""
    assert [str(p) for p in quote.stale()] == []


def test_the_editing_table_and_the_zoo_table_are_quoted():
    assert "<!--quote edit_table-->" in (quote.ROOT / "docs" / "vision.md").read_text()
    assert "<!--quote zoo_table-->" in (quote.ROOT / "README.md").read_text()


def test_the_simulator_agents_table_is_the_benchmark_json_row_for_row():
    quote.load.cache_clear()
    filed = quote.load(quote.SIM_AGENTS)
    table = quote.sim_agents_table()
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in table[2:]]
    agent = None
    for row in cells:
        if row[0]:
            agent = row[0].split("`")[1]
            assert row[0] == f"`{agent}` ({filed['agents'][agent]['paired']} paired)"
        if row[1] in filed["agents"][agent]["real"]:
            for col, side in ((2, "real"), (3, "imagined"), (4, "imagined_view")):
                assert row[col].startswith(f"{100 * filed['agents'][agent][side][row[1]]['rate']:.1f}%")
    assert {r[0].split("`")[1] for r in cells if r[0]} == set(filed["agents"])


# A measured figure: a decimal with two or more places, a decimal percentage, or a number with thousands commas.
FIGURE = re.compile(r"(?<![\w.\-/=:])(?:\d+\.\d+\s?%|\d+\.\d{2,}|\d{1,3}(?:,\d{3})+)(?![\w.])")


def unquoted_prose(text: str) -> str:
    """``text`` without what may hold a figure legitimately: quote marks (filled from JSON), code (commands and
    settings), link targets, quotations of the papers ("..."), and the Python version it needs."""
    for pattern in (r"```.*?```", r"<!--quote \S+-->.*?<!--/quote-->", r"<!--q .*?<!--/q-->", r"`[^`\n]*`",
                    r"\]\([^)]*\)", r'"[^"]*"', r"Python \d+\.\d+"):
        text = re.sub(pattern, lambda m: "\n" * m[0].count("\n"), text, flags=re.S)  # lines keep their numbers
    return text


def test_the_figure_pattern_catches_hand_copied_figures_and_spares_quoted_ones():
    assert FIGURE.findall(unquoted_prose("the share rose to 0.97 over 1,000 levels (12.5%)")) == ["0.97", "1,000", "12.5%"]
    assert FIGURE.findall(unquoted_prose('<!--q f a .2f-->0.97<!--/q--> `--lr 2.5e-4` "12.76%" at step 10, 95%')) == []


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(p.relative_to(quote.ROOT)) for p in
                                                     (quote.ROOT / "docs").glob("*.md"))])
def test_readme_and_docs_hold_no_hand_copied_figures(doc):
    """Every measured figure in README and docs/ is a quote mark filled from committed JSON (or a quotation of a
    paper, or a setting in code): a number typed by hand goes stale when a benchmark is rerun."""
    text = unquoted_prose((quote.ROOT / doc).read_text())
    found = [(n + 1, FIGURE.findall(line)) for n, line in enumerate(text.splitlines()) if FIGURE.search(line)]
    assert found == [], f"{doc}: figures typed by hand (quote them from their JSON with benchmarks.quote marks)"


def test_the_readme_is_short_and_speaks_about_the_tool():
    readme = (quote.ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024
    for doc in ["README.md", *(str(p.relative_to(quote.ROOT)) for p in (quote.ROOT / "docs").glob("*.md"))]:
        text = (quote.ROOT / doc).read_text()
        assert not re.search(r"\bsessions? \d|seed 00\d|the issue's", text, re.I), doc
