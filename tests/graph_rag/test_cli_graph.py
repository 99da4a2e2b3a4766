"""`graphcraft graph build|stats|show` on the sample store, through the `graphcraft` command."""

from __future__ import annotations

import json

from click.testing import Result
from typer.testing import CliRunner

from graphcraft.cli import app


def graph_cli(runner: CliRunner, args: list[str]) -> Result:
    """`graphcraft graph ARGS...`"""
    return runner.invoke(app, ["graph", *args])


def test_graph_cli_build_stats_show(sample_index, tmp_path):
    settings, _, graph, _ = sample_index
    runner = CliRunner()
    store = str(settings.store)
    built = graph_cli(runner, ["build", "--store", store, "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["unchanged"] is True  # the fixture already built it
    stats = graph_cli(runner, ["stats", "--store", store, "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output) == graph.counts()
    png = tmp_path / "acme.png"
    shown = graph_cli(runner, ["show", "ACME Corporation", "--store", store, "--hops", "2", "--out", str(png)])
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = tmp_path / "communities.html"
    assert graph_cli(runner, ["show", "--store", store, "--out", str(html)]).exit_code == 0
    assert "vis-network" in html.read_text() or "vis.js" in html.read_text()
    missing = graph_cli(runner, ["show", "Nobody At All", "--store", store, "--out", str(tmp_path / "x.png")])
    assert missing.exit_code == 1 and "no entity named" in missing.output


def test_graph_cli_refuses_a_missing_store_without_creating_it(tmp_path):
    runner = CliRunner()
    nope = tmp_path / "NOPE"
    for args in (["stats", "--store", str(nope)], ["show", "--store", str(nope), "--out", str(tmp_path / "g.png")]):
        result = graph_cli(runner, args)
        assert result.exit_code == 1 and "is empty" in result.output, result.output
        assert isinstance(result.exception, SystemExit)  # a one-line error, not a traceback
    assert not nope.exists()


def test_graph_cli_show_validates_options(sample_index, tmp_path):
    settings, _, graph, report = sample_index
    runner = CliRunner()
    store = str(settings.store)
    cases = {
        ("--out", str(tmp_path / "a.txt")): ".png",
        ("--max-nodes", "0", "--out", str(tmp_path / "b.png")): "--max-nodes",
        ("--hops", "-1", "--out", str(tmp_path / "c.png")): "--hops",
    }
    for extra, message in cases.items():
        result = graph_cli(runner, ["show", "ACME Corporation", "--store", store, *extra])
        assert result.exit_code == 1 and message in result.output, result.output
        assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "a.txt").exists()
    levels = sorted({int(r["level"]) for r in graph.query("MATCH (c:Community) RETURN DISTINCT c.level AS level")})
    assert levels, "the sample graph has communities"
    empty = graph_cli(
        runner, ["show", "--store", store, "--level", str(max(levels) + 5), "--out", str(tmp_path / "d.png")]
    )
    assert empty.exit_code == 1, empty.output
    assert f"levels {', '.join(map(str, levels))} exist" in empty.output and "graph build" not in empty.output
