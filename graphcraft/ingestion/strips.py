"""Knowledge strips: the sentence-level units CRAG scores, filters and recomposes.

`split_strips` cuts a chunk into sentence-like strips (character spans) with a fast regex, so
ingestion needs no NLP pipeline. Their vectors come from `late_chunk_embed`: one transformer
pass over the whole chunk, mean-pooled over all tokens (exactly the chunk's ordinary
sentence-transformers embedding) and over each strip's tokens ("late chunking", Günther et al.
2024). Strip vectors therefore cost no extra model call, at ingest or at query time, and carry
the context of their chunk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# Inside a block of lines, a strip ends at sentence punctuation followed by space and a capital.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9#*\-•])")
# A line that starts a new block: heading, list item, table row, quote, code fence.
_BLOCK_START = re.compile(r"\s*(?:#|[-+*•] |\d+[.)] |\||>|```)")
MIN_STRIP_CHARS = 12
_ABBREVIATIONS = {
    "dr",
    "mr",
    "mrs",
    "ms",
    "prof",
    "st",
    "jr",
    "sr",
    "inc",
    "ltd",
    "co",
    "corp",
    "vs",
    "no",
    "fig",
    "e.g",
    "i.e",
    "etc",
    "approx",
    "dept",
    "est",
    "gen",
    "gov",
    "mt",
    "ave",
    "u.s",
}


def _after_abbreviation(text: str, end: int) -> bool:
    """True when the '.' ending at `end` belongs to an abbreviation or an initial (J. Smith)."""
    if end == 0 or text[end - 1] != ".":
        return False
    word = re.split(r"[\s(\[\"']", text[max(0, end - 8) : end - 1])[-1].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _line_blocks(text: str) -> list[tuple[int, int]]:
    """Spans of runs of lines that belong together: a line break inside a wrapped sentence is not a boundary.

    A block ends at a blank line, after a heading, a table row or a line ending a sentence, and
    before a line that starts a heading, list item, table row or code fence.
    """
    blocks: list[tuple[int, int]] = []
    lines = text.splitlines(keepends=True)
    start = pos = 0
    for i, line in enumerate(lines):
        pos += len(line)
        body = line.strip()
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            not body
            or body.startswith(("#", "|"))
            or body.endswith((".", "!", "?", ":"))
            or not following.strip()
            or _BLOCK_START.match(following)
        ):
            blocks.append((start, pos))
            start = pos
    if start < len(text):
        blocks.append((start, len(text)))
    return blocks


def split_strips(text: str) -> list[tuple[int, int]]:
    """Character spans of the strips of `text`: whole sentences, list items, headings, table rows, code blocks.

    Short fragments are merged into their neighbour; a sentence wrapped over several lines stays one strip.
    """
    spans: list[tuple[int, int]] = []
    for block_start, block_end in _line_blocks(text):
        start = block_start
        for match in _SENTENCE_END.finditer(text, block_start, block_end):
            if _after_abbreviation(text, match.start()):
                continue
            spans.append((start, match.start()))
            start = match.end()
        spans.append((start, block_end))
    cleaned: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e <= s:
            continue
        if cleaned and (e - s < MIN_STRIP_CHARS or cleaned[-1][1] - cleaned[-1][0] < MIN_STRIP_CHARS):
            cleaned[-1] = (cleaned[-1][0], e)
        else:
            cleaned.append((s, e))
    return cleaned or [(0, len(text))]


def strip_spans(doc: Any) -> list[tuple[int, int]]:
    """Character spans of a chunk's strips: the ones stored at ingest, else cut now (external documents).

    The one place that decides a document's strips, so that stored vectors, strip scores and the
    spans an answer marks always index the same sentences.
    """
    stored = doc.metadata.get("strips")
    if stored:
        return [(int(a), int(b)) for a, b in stored]
    return split_strips(doc.page_content)


def embed_chunks(
    embeddings: Any, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Chunk and strip vectors: late chunking for local sentence-transformers, else two calls."""
    from graphcraft.models import SentenceTransformerEmbeddings, embed_texts

    if isinstance(embeddings, SentenceTransformerEmbeddings):
        return late_chunk_embed(embeddings.st_model, texts, spans, batch_size=embeddings.batch_size)
    chunk_vecs = embed_texts(embeddings, texts)
    flat = [text[s:e] for text, sp in zip(texts, spans, strict=False) for s, e in sp]
    flat_vecs = embed_texts(embeddings, flat) if flat else np.zeros((0, chunk_vecs.shape[1]), dtype=np.float32)
    out, pos = [], 0
    for sp in spans:
        out.append(flat_vecs[pos : pos + len(sp)])
        pos += len(sp)
    return chunk_vecs, out


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _pool_spans(
    tokens: np.ndarray, offs: np.ndarray, spans: Sequence[tuple[int, int]], dim: int
) -> tuple[np.ndarray, list[int]]:
    """Mean of each span's token vectors, and the spans with no token inside the window."""
    real = offs[:, 1] > offs[:, 0]  # special tokens have empty offsets
    vecs = np.zeros((len(spans), dim), dtype=np.float32)
    missed: list[int] = []
    for j, (s, e) in enumerate(spans):
        inside = real & (offs[:, 0] < e) & (offs[:, 1] > s)
        if inside.any():
            vecs[j] = tokens[inside].mean(axis=0)
        else:
            missed.append(j)
    return vecs, missed


def late_chunk_embed(
    st_model: Any,
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    batch_size: int = 32,
    max_length: int = 256,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(chunk vectors (n, d), per-chunk strip vectors) from one forward pass per chunk.

    Strips whose tokens fall beyond the model's window (truncated chunks) are embedded on their
    own so every strip still gets a vector.
    """
    import torch

    transformer = st_model[0]
    tokenizer, model = transformer.tokenizer, transformer.auto_model
    max_length = min(max_length, getattr(transformer, "max_seq_length", max_length) or max_length)
    dim = model.config.hidden_size
    chunk_vecs = np.zeros((len(texts), dim), dtype=np.float32)
    strip_vecs: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32)] * len(texts)
    leftovers: list[tuple[int, int, str]] = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch with less padding
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            offsets = enc.pop("offset_mapping").numpy()
            hidden = model(
                **{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            ).last_hidden_state
            hidden = hidden.float().numpy()
            mask = enc["attention_mask"].numpy().astype(bool)
            for row, i in enumerate(idx):
                tokens = hidden[row][mask[row]]
                chunk_vecs[i] = tokens.mean(axis=0)
                strip_vecs[i], missed = _pool_spans(tokens, offsets[row][mask[row]], spans[i], dim)
                leftovers += [(i, j, texts[i][spans[i][j][0] : spans[i][j][1]]) for j in missed]
    if leftovers:
        extra = st_model.encode(
            [t for _, _, t in leftovers],
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        for (i, j, _), vec in zip(leftovers, extra, strict=False):
            strip_vecs[i][j] = vec
    return _normalise(chunk_vecs), [_normalise(v) for v in strip_vecs]
