"""`graphcraft graph build|stats|show` on the sample store."""

from __future__ import annotations

import json

from typer.testing import CliRunner


def test_graph_cli_build_stats_show(sample_index, tmp_path):
    from graphcraft.cli_graph import app

    settings, _, graph, _ = sample_index
    runner = CliRunner()
    store = str(settings.store)
    built = runner.invoke(app, ["build", "--store", store, "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.output)["unchanged"] is True  # the fixture already built it
    stats = runner.invoke(app, ["stats", "--store", store, "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output) == graph.counts()
    png = tmp_path / "acme.png"
    shown = runner.invoke(app, ["show", "ACME Corporation", "--store", store, "--hops", "2", "--out", str(png)])
    assert shown.exit_code == 0, shown.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    html = tmp_path / "communities.html"
    assert runner.invoke(app, ["show", "--store", store, "--out", str(html)]).exit_code == 0
    assert "vis-network" in html.read_text() or "vis.js" in html.read_text()
    missing = runner.invoke(app, ["show", "Nobody At All", "--store", store, "--out", str(tmp_path / "x.png")])
    assert missing.exit_code == 1 and "no entity named" in missing.output


def test_graph_cli_refuses_a_missing_store_without_creating_it(tmp_path):
    from graphcraft.cli_graph import app

    runner = CliRunner()
    nope = tmp_path / "NOPE"
    for args in (["stats", "--store", str(nope)], ["show", "--store", str(nope), "--out", str(tmp_path / "g.png")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "is empty" in result.output, result.output
        assert isinstance(result.exception, SystemExit)  # a one-line error, not a traceback
    assert not nope.exists()


def test_graph_cli_show_validates_options(sample_index, tmp_path):
    from graphcraft.cli_graph import app

    settings, _, graph, report = sample_index
    runner = CliRunner()
    store = str(settings.store)
    cases = {
        ("--out", str(tmp_path / "a.txt")): ".png",
        ("--max-nodes", "0", "--out", str(tmp_path / "b.png")): "--max-nodes",
        ("--hops", "-1", "--out", str(tmp_path / "c.png")): "--hops",
    }
    for extra, message in cases.items():
        result = runner.invoke(app, ["show", "ACME Corporation", "--store", store, *extra])
        assert result.exit_code == 1 and message in result.output, result.output
        assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "a.txt").exists()
    levels = sorted({int(r["level"]) for r in graph.query("MATCH (c:Community) RETURN DISTINCT c.level AS level")})
    assert levels, "the sample graph has communities"
    empty = runner.invoke(
        app, ["show", "--store", store, "--level", str(max(levels) + 5), "--out", str(tmp_path / "d.png")]
    )
    assert empty.exit_code == 1, empty.output
    assert f"levels {', '.join(map(str, levels))} exist" in empty.output and "graph build" not in empty.output
