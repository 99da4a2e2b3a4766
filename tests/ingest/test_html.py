"""HTML reads like the page: title apart, no site chrome, headings as section paths, code
verbatim, definition terms with their text, tables as rows. Built Sphinx- and DocBook-style
pages, the sample corpus, and real pages of the Debian manuals when they are installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from graphcraft.ingestion.loaders import load_html
from graphcraft.ingestion.splitting import split_documents

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "corpus"
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
POSTGRES_DOCS = Path("/usr/share/doc/postgresql-doc-15/html")

# Long lines of the pages below continue after a backslash: the page itself has no line break there.
SPHINX_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>widget — Widget tools &#8212; Gadget 2.1 documentation</title>
<script>var DOCUMENTATION_OPTIONS = {};</script></head>
<body>
<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3><ul>
  <li class="right"><a href="genindex.html">index</a></li><li class="right"><a href="next.html">next</a> |</li>
  <li class="right"><a href="prev.html">previous</a> |</li><li><a href="index.html">Gadget 2.1 Documentation</a>\
 &#187;</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper">
<div class="body" role="main">
<section id="widget">
<h1>widget — Widget tools<a class="headerlink" href="#widget" title="Permalink to this heading">¶</a></h1>
<p>The widget module assembles sprockets into <em>widgets</em>.</p>
<div class="admonition note"><p class="admonition-title">Note</p><p>Widgets are not thread-safe.</p></div>
<section id="configuration">
<h2>Configuration<a class="headerlink" href="#configuration" title="Permalink to this heading">¶</a></h2>
<div class="highlight-python3 notranslate"><div class="highlight"><pre><span></span><span class="c1">\
# build a widget</span>
<span class="k">def</span> <span class="nf">build</span><span class="p">(</span><span class="n">size</span>\
<span class="p">):</span>
    <span class="k">return</span> <span class="n">Widget</span><span class="p">(</span><span class="n">size</span>\
<span class="p">)</span>
</pre></div></div>
<dl class="py function">
<dt class="sig sig-object py" id="widget.spin"><span class="sig-prename descclassname"><span class="pre">widget.</span>\
</span><span class="sig-name descname"><span class="pre">spin</span></span><span class="sig-paren">(</span>\
<em class="sig-param"><span class="n"><span class="pre">speed</span></span></em>, <em class="sig-param">\
<span class="n"><span class="pre">clockwise</span></span><span class="o"><span class="pre">=</span></span>\
<span class="default_value"><span class="pre">True</span></span></em><span class="sig-paren">)</span>\
<a class="headerlink" href="#widget.spin" title="Permalink to this definition">¶</a></dt>
<dd><p>Rotate the widget at <em>speed</em> turns per second until the flywheel stops.</p>
<p>Raises <code class="xref py py-exc docutils literal notranslate"><span class="pre">ValueError</span></code>\
 when speed is negative.</p></dd></dl>
<section id="advanced">
<h3>Advanced<a class="headerlink" href="#advanced" title="Permalink to this heading">¶</a></h3>
<table class="docutils align-default"><thead><tr class="row-odd"><th class="head"><p>Mode</p></th><th class="head"><p>\
Torque</p></th></tr></thead>
<tbody><tr class="row-even"><td><p>gentle</p></td><td><p>3 Nm</p></td></tr><tr class="row-odd"><td><p>brisk</p></td>\
<td><p>9 Nm</p></td></tr></tbody></table>
</section></section></section>
<div class="clearer"></div></div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><div class="sphinxsidebarwrapper">
  <h3><a href="index.html">Table of Contents</a></h3><ul><li><a href="#">widget — Widget tools</a></li></ul>
  <h4>Previous topic</h4><p class="topless"><a href="prev.html">sprocket — Sprocket parts</a></p>
  <div role="note" aria-label="source link"><h3>This Page</h3><ul class="this-page-menu"><li>\
<a href="_sources/widget.rst.txt">Show Source</a></li></ul></div>
  <div id="searchbox" role="search"><h3>Quick search</h3><form class="search" action="search.html">\
<input type="text" name="q"/></form></div>
</div></div><div class="clearer"></div></div>
<div class="footer">&#169; Copyright 2024, Gadget Makers. Created using <a href="https://www.sphinx-doc.org/">\
Sphinx</a> 5.3.0.</div>
</body></html>
"""

DOCBOOK_PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" \
"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<title>CREATE WIDGET</title><link rel="prev" href="sql-createview.html" title="CREATE VIEW" /></head><body>
<div class="navheader"><table width="100%" summary="Navigation header"><tr><th colspan="5" align="center">\
CREATE WIDGET</th></tr>
<tr><td align="left"><a accesskey="p" href="sql-createview.html">Prev</a> </td><td>\
<a accesskey="u" href="sql-commands.html">Up</a></td>
<th align="center">SQL Commands</th><td align="right"><a accesskey="h" href="index.html">Home</a></td>
<td align="right"> <a accesskey="n" href="sql-delete.html">Next</a></td></tr></table><hr /></div>
<div class="refentry" id="SQL-CREATEWIDGET"><div class="titlepage"></div>
<div class="refnamediv"><h2><span class="refentrytitle">CREATE WIDGET</span></h2><p>\
CREATE WIDGET — define a new widget</p></div>
<div class="refsynopsisdiv"><h2>Synopsis</h2><pre class="synopsis">
CREATE WIDGET <em class="replaceable"><code>name</code></em>
    [ WITH ( <em class="replaceable"><code>storage_parameter</code></em> = <em class="replaceable"><code>value</code>\
</em> ) ]
</pre></div>
<div class="refsect1" id="id-1"><h2>Parameters</h2><div class="variablelist"><dl class="variablelist">
<dt><span class="term"><code class="literal">SPINDLE</code></span></dt><dd><p>
   Mounts the widget on a spindle so that it can rotate freely.
</p></dd>
<dt id="WIDGET-FILLFACTOR"><span class="term"><code class="literal">fillfactor</code> (<code class="type">\
integer</code>)</span></dt>
<dd><p>The fillfactor for a widget is a percentage between 10 and 100.</p></dd></dl></div>
<div class="note"><h3 class="title">Note</h3><p>Widgets cannot be created inside a transaction block.</p></div>
</div>
<div class="refsect1" id="id-2"><h2>Limits</h2><div class="table" id="WIDGET-LIMITS"><p class="title"><strong>\
Table 1. Widget limits</strong></p>
<div class="table-contents"><table class="table" summary="Widget limits" border="1"><colgroup><col /><col /></colgroup>
<thead><tr><th>Item</th><th>Upper Limit</th></tr></thead><tbody><tr><td>spindles per widget</td><td>64</td></tr>\
</tbody></table></div></div></div>
</div>
<div class="navfooter"><hr /><table width="100%" summary="Navigation footer"><tr><td align="left">\
<a accesskey="p" href="sql-createview.html">Prev</a> </td>
<td align="center"><a accesskey="u" href="sql-commands.html">Up</a></td><td align="right">\
 <a accesskey="n" href="sql-delete.html">Next</a></td></tr>
<tr><td align="left" valign="top">CREATE VIEW </td><td align="center"><a accesskey="h" href="index.html">Home</a></td>\
<td align="right" valign="top"> DELETE</td></tr></table></div>
</body></html>
"""


def load(tmp_path: Path, html: str, name: str = "page.html") -> Document:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    [doc] = load_html(path)
    return doc


def chunks_of(doc: Document, chunk_size: int = 800) -> list[Document]:
    return split_documents([doc], "hash", chunk_size, min(120, chunk_size // 4))


def chunk_with(chunks: list[Document], needle: str) -> Document:
    return next(c for c in chunks if needle in c.page_content)


def lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


# ---------------------------------------------------------------------------- Sphinx style


@pytest.fixture()
def sphinx(tmp_path: Path) -> Document:
    return load(tmp_path, SPHINX_PAGE)


def test_sphinx_title_is_its_own_heading_and_metadata(sphinx: Document) -> None:
    assert sphinx.metadata["title"] == "widget — Widget tools"
    first, second = sphinx.page_content.split("\n\n")[:2]
    assert first == "# widget — Widget tools"
    assert second == "The widget module assembles sprockets into widgets."


def test_sphinx_navigation_sidebar_footer_and_permalinks_are_gone(sphinx: Document) -> None:
    text = sphinx.page_content
    for chrome in (
        "previous",
        "next",
        "index",
        "Table of Contents",
        "Previous topic",
        "Show Source",
        "Quick search",
        "Copyright",
        "Sphinx",
        "¶",
        "DOCUMENTATION_OPTIONS",
        "Gadget 2.1",
    ):
        assert chrome not in text, chrome


def test_sphinx_headings_become_section_paths(sphinx: Document) -> None:
    chunks = chunks_of(sphinx, chunk_size=200)
    sections = {c.metadata["section"] for c in chunks}
    assert sections == {
        "widget — Widget tools",
        "widget — Widget tools > Configuration",
        "widget — Widget tools > Configuration > Advanced",
    }
    assert chunk_with(chunks, "9 Nm").metadata["section"] == "widget — Widget tools > Configuration > Advanced"


def test_sphinx_code_is_verbatim_and_its_comment_is_not_a_heading(sphinx: Document) -> None:
    code = "```\n# build a widget\ndef build(size):\n    return Widget(size)\n```"
    assert code in sphinx.page_content.split("\n\n")
    chunk = chunk_with(chunks_of(sphinx, chunk_size=200), "def build(size):")
    assert code in chunk.page_content and chunk.metadata["section"] == "widget — Widget tools > Configuration"


def test_sphinx_signature_stays_with_its_description(sphinx: Document) -> None:
    for chunk_size in (80, 800):  # even when the description has to be cut
        chunk = chunk_with(chunks_of(sphinx, chunk_size), "widget.spin(speed, clockwise=True)")
        assert "Rotate the widget" in chunk.page_content
    assert "Raises ValueError when speed is negative." in sphinx.page_content


def test_sphinx_note_label_and_table_rows(sphinx: Document) -> None:
    assert "Note: Widgets are not thread-safe." in lines(sphinx.page_content)
    assert {"Mode | Torque", "gentle | 3 Nm", "brisk | 9 Nm"} <= lines(sphinx.page_content)


# --------------------------------------------------------------------------- DocBook style


@pytest.fixture()
def docbook(tmp_path: Path) -> Document:
    return load(tmp_path, DOCBOOK_PAGE)


def test_docbook_reference_page_title_heads_its_sections(docbook: Document) -> None:
    assert docbook.metadata["title"] == "CREATE WIDGET"
    assert docbook.page_content.startswith("# CREATE WIDGET\n\nCREATE WIDGET — define a new widget\n\n## Synopsis")
    sections = [c.metadata["section"] for c in chunks_of(docbook, chunk_size=200)]
    assert list(dict.fromkeys(sections)) == [
        "CREATE WIDGET",
        "CREATE WIDGET > Synopsis",
        "CREATE WIDGET > Parameters",
        "CREATE WIDGET > Limits",
    ]


def test_docbook_navigation_header_and_footer_are_gone(docbook: Document) -> None:
    words = set(docbook.page_content.split())
    assert not words & {"Prev", "Up", "Home", "Next", "DELETE"}
    assert "SQL Commands" not in docbook.page_content and "CREATE VIEW" not in docbook.page_content


def test_docbook_synopsis_is_verbatim(docbook: Document) -> None:
    synopsis = "```\nCREATE WIDGET name\n    [ WITH ( storage_parameter = value ) ]\n```"
    assert synopsis in docbook.page_content


def test_docbook_variablelist_terms_keep_their_text(docbook: Document) -> None:
    assert "SPINDLE: Mounts the widget on a spindle so that it can rotate freely." in lines(docbook.page_content)
    chunk = chunk_with(chunks_of(docbook, chunk_size=60), "fillfactor (integer)")  # the description is cut
    assert "The fillfactor for a widget" in chunk.page_content


def test_docbook_note_is_a_label_not_a_section_and_tables_are_rows(docbook: Document) -> None:
    assert "Note: Widgets cannot be created inside a transaction block." in lines(docbook.page_content)
    assert "Note" not in {c.metadata["section"].split(" > ")[-1] for c in chunks_of(docbook, 200)}
    assert {"Table 1. Widget limits", "Item | Upper Limit", "spindles per widget | 64"} <= lines(docbook.page_content)


# ------------------------------------------------------------------------ the sample corpus


def test_sample_press_release_keeps_content_and_drops_site_chrome() -> None:
    [doc] = load_html(SAMPLES / "press_release_railhawk.html")
    text = doc.page_content
    assert doc.metadata["title"].startswith("Halvard Robotics and Lindqvar Metropolitan Transit sign agreement")
    assert text.startswith(f"Press release · Lindqvar, 6 February 2024\n\n# {doc.metadata['title']}\n\n")
    assert "Careers" not in text and "All rights reserved" not in text  # page header nav, page footer
    assert "— Tobias Renwick, chief executive, Halvard Robotics" in lines(text)  # a quote's own footer stays
    assert {"Railhawk at a glance", "Length | 1.9 m", "Range per night | up to 18 km"} <= lines(text)
    assert "- Twelve Railhawk robots, with delivery of the first four in the first quarter of 2025." in lines(text)


def test_sample_service_notice_sections_and_no_breadcrumb() -> None:
    [doc] = load_html(SAMPLES / "lmt_service_notice_riverside.html")
    assert "Service changes ›" not in doc.page_content and "Journey planner" not in doc.page_content
    chunk = chunk_with(chunks_of(doc), "expansion joints")
    assert chunk.metadata["section"] == (
        "Planned changes on Line 7 Riverside, October 2024 > "
        "Saturday 26 and Sunday 27 October: Tessel bridge maintenance"
    )


# ------------------------------------------------------------------------ real Debian manuals


def installed(path: Path, package: str) -> Path:
    if not path.is_file():
        pytest.skip(f"{path.name} not found: apt-get install {package}")
    return path


def test_real_sphinx_page_python_json() -> None:
    [doc] = load_html(installed(PYTHON_DOCS / "library" / "json.html", "python3.11-doc"))
    text = doc.page_content
    assert doc.metadata["title"] == "json — JSON encoder and decoder"
    assert text.startswith("# json — JSON encoder and decoder\n\nSource code: Lib/json/__init__.py\n\n")
    for chrome in (
        "Previous topic",
        "Next topic",
        "Show Source",
        "Report a Bug",
        "modules |",
        "¶",
        "Created using Sphinx",
    ):
        assert chrome not in text, chrome
    chunks = chunks_of(doc)
    sections = {c.metadata["section"] for c in chunks}
    assert {
        "json — JSON encoder and decoder > Basic Usage",
        "json — JSON encoder and decoder > Command Line Interface > Command line options",
    } <= sections
    signature = chunk_with(chunks, "json.dumps(obj, *, skipkeys=False")
    assert "Serialize obj to a JSON formatted str" in signature.page_content
    assert '{\n    "4": 5,\n    "6": 7\n}' in text  # doctest output keeps its indentation


def test_real_docbook_page_postgres_create_index() -> None:
    [doc] = load_html(installed(POSTGRES_DOCS / "sql-createindex.html", "postgresql-doc-15"))
    text = doc.page_content
    assert doc.metadata["title"] == "CREATE INDEX"
    assert text.startswith(
        "# CREATE INDEX\n\nCREATE INDEX — define a new index\n\n## Synopsis\n\n```\nCREATE [ UNIQUE ] INDEX"
    )
    assert not set(text.split()) & {"Prev", "Up", "Home", "Next"}
    assert "    [ INCLUDE ( column_name [, ...] ) ]" in text.splitlines()
    chunks = chunks_of(doc)
    assert {"CREATE INDEX > Parameters", "CREATE INDEX > Examples", "CREATE INDEX > See Also"} <= {
        c.metadata["section"] for c in chunks
    }
    concurrently = chunk_with(chunks, "CONCURRENTLY: When this option is used")
    assert concurrently.metadata["section"] == "CREATE INDEX > Parameters"


def test_real_docbook_table_page_postgres_numeric_types() -> None:
    [doc] = load_html(installed(POSTGRES_DOCS / "datatype-numeric.html", "postgresql-doc-15"))
    assert {
        "Name | Storage Size | Description | Range",
        "smallint | 2 bytes | small-range integer | -32768 to +32767",
    } <= lines(doc.page_content)
    assert chunk_with(chunks_of(doc), "smallint | 2 bytes").metadata["section"] == "8.1. Numeric Types"


TITLE_OUTSIDE_HEAD = [
    "<title>Harbour notes</title><p>Boats leave at dawn.</p>",
    "<!doctype html><title>Harbour notes</title>Boats leave at dawn.",
    "<html><title>Harbour notes</title><body><p>Boats leave at dawn.</p></body></html>",
]


@pytest.mark.parametrize("page", TITLE_OUTSIDE_HEAD)
def test_a_title_outside_head_is_not_glued_to_the_body(tmp_path: Path, page: str) -> None:
    """HTML without a <head> (legal: the parser then leaves <title> in the body) once gave
    "Harbour notesBoats leave at dawn." as the first paragraph."""
    path = tmp_path / "page.html"
    path.write_text(page)
    [doc] = load_html(path)
    assert doc.metadata["title"] == "Harbour notes"
    assert doc.page_content == "# Harbour notes\n\nBoats leave at dawn."
