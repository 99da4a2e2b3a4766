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
