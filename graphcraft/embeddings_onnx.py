"""Query embeddings without torch: a sentence-transformers model exported once to ONNX.

Importing torch and sentence-transformers costs seconds; answering a question needs one
forward pass of a small BERT. So the local model (Transformer -> mean pooling -> normalise) is
exported once with `torch.onnx.export`, while torch is loaded anyway (at ingest, or the first
query that finds no export), and later processes embed with onnxruntime and the `tokenizers`
package alone, repeating the sentence-transformers pipeline step by step.

An export is only ever used if it is known to give the same vectors: it is written beside a
manifest holding the sha256 of the ONNX file and the vectors torch gave for a fixed set of
texts. The export is kept only if ONNX reproduces them to `TOLERANCE`, and every process checks
the file's hash and the reference vectors again before its first query; any mismatch means torch
(never a wrong vector). Files live under the user cache directory, keyed by a hash of the model's
files, and are written atomically (temporary file, then rename), so concurrent processes never
read half an export.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-5
FORMAT = 2
MANIFEST_FILE = "manifest.json"
# Fixed texts whose torch vectors every export must reproduce, checked again by every process
# before its first query: short and long, names and numbers, non-ASCII, padded batches. Kept
# small, since the check is on the start-up path (the tests compare longer texts, truncation too).
REFERENCE_TEXTS = (
    "The council approved the riverside reconnect project after a public consultation "
    "that ran for six weeks and drew more than four thousand responses from residents.",
    "  Kestrel K4 drones may not fly above 120 m within 2 km of the harbour.  ",
    "Zoë Quist-Ångström paid €1,250 for permit #A-77 on 3 March 2024.",
    "What is the Lantern Festival?",
    "ok",
)
REFERENCE_BATCH = 3


class OnnxUnavailable(Exception):
    """Why the ONNX query embedder cannot be used in this process (the caller falls back to torch)."""


class OnnxMissing(OnnxUnavailable):
    """No export yet (the usual state before the first ingest or query), as opposed to a bad one."""


@dataclass(frozen=True)
class PipelineSpec:
    """What sentence-transformers does after the transformer, read from the model's own config files."""

    max_seq_length: int
    dimension: int
    normalize: bool


def read_pipeline(model_path: str | Path) -> PipelineSpec | None:
    """The model's pipeline when ONNX can reproduce it (Transformer, mean pooling, optional
    Normalize, a fast tokenizer); None for anything else (CLS pooling, dense layers ...)."""
    root = Path(model_path)
    try:
        modules = json.loads((root / "modules.json").read_text())
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        pooling_dir = next(m["path"] for m in modules if str(m["type"]).endswith("Pooling"))
        pooling = json.loads((root / pooling_dir / "config.json").read_text())
        sbert = json.loads((root / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    if modes != {"pooling_mode_mean_tokens"} or sbert.get("do_lower_case") or not (root / "tokenizer.json").is_file():
        return None
    return PipelineSpec(
        max_seq_length=int(sbert.get("max_seq_length") or 512),
        dimension=int(pooling["word_embedding_dimension"]),
        normalize=kinds[-1] == "Normalize",
    )


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _model_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix != ".md")


def model_fingerprint(model_path: str | Path) -> str:
    """sha256 over the model's files (names and contents): a changed model gets a new export.

    Hashing ~90 MB on every start would cost a tenth of a second, so the result is remembered
    against the files' sizes and modification times (as git's index does) and recomputed when
    any of them changes."""
    root = Path(model_path).resolve()
    files = _model_files(root)
    signature = [[p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    memo_path = cache_root() / "fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    known = memo.get(str(root)) if isinstance(memo, dict) else None
    if isinstance(known, dict) and known.get("signature") == signature:
        return str(known["sha256"])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + file_sha256(path).encode() + b"\n")
    memo = memo if isinstance(memo, dict) else {}
    memo[str(root)] = {"signature": signature, "sha256": digest.hexdigest()}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(memo_path, json.dumps(memo).encode())
    except OSError:
        pass  # a read-only cache directory: hash again next time
    return digest.hexdigest()


def cache_root() -> Path:
    """Where exports live: the user cache directory ($XDG_CACHE_HOME/graphcraft/onnx on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("graphcraft")) / "onnx"


def export_dir(model_path: str | Path) -> Path:
    return cache_root() / model_fingerprint(model_path)[:24]


class OnnxEncoder:
    """Tokenise, run the ONNX transformer, mean-pool over the attention mask, L2-normalise:
    the sentence-transformers pipeline, with onnxruntime instead of torch."""

    def __init__(self, onnx_path: Path, model_path: str | Path, spec: PipelineSpec) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.spec = spec
        self.tokenizer = Tokenizer.from_file(str(Path(model_path) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=spec.max_seq_length)
        pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id) or "[PAD]")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # One thread that sleeps when idle: a query is a few dozen tokens, and spinning worker
        # threads cost seconds on a busy machine (measured: 3 s to open a session under load).
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """float32 (n, dim); batches of similar length, like sentence-transformers, for less padding."""
        out = np.zeros((len(texts), self.spec.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._encode_batch([texts[i].strip() for i in rows])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        if self.spec.normalize:
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return pooled.astype(np.float32)


def _max_difference(encoder: OnnxEncoder, reference: np.ndarray) -> float:
    got = encoder.encode(list(REFERENCE_TEXTS), batch_size=REFERENCE_BATCH)
    if got.shape != reference.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - reference).max())


def load_verified(model_path: str | Path) -> OnnxEncoder:
    """The ONNX encoder of this model's export, checked (file hash, reference vectors) before use.

    Raises OnnxUnavailable naming what is missing or wrong."""
    spec = read_pipeline(model_path)
    if spec is None:
        raise OnnxMissing(f"{model_path} is not a mean-pooling sentence-transformers model")
    folder = export_dir(model_path)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise OnnxMissing(f"no ONNX export in {folder}") from exc
    if manifest.get("format") != FORMAT:
        raise OnnxMissing(f"no ONNX export of this format in {folder}")
    onnx_path = folder / str(manifest.get("onnx_file", ""))
    if not manifest.get("onnx_file") or not onnx_path.is_file():
        raise OnnxUnavailable(f"the ONNX file named by {folder / MANIFEST_FILE} is missing")
    if not _has_content(onnx_path, str(manifest.get("onnx_sha256"))):
        raise OnnxUnavailable(f"{onnx_path} does not match its manifest (corrupted or replaced)")
    try:
        encoder = OnnxEncoder(onnx_path, model_path, spec)
        difference = _max_difference(encoder, np.asarray(manifest["reference_vectors"], dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
        raise OnnxUnavailable(f"{onnx_path} cannot be run: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if not difference <= TOLERANCE:
        raise OnnxUnavailable(f"{onnx_path} gives vectors {difference:.1e} away from torch's (limit {TOLERANCE:.0e})")
    return encoder


def _has_content(path: Path, sha: str) -> bool:
    """Whether `path` holds the content hashing to `sha`.

    Hashed in full unless its size, times and inode equal those recorded beside it the last time
    it hashed right: any write to a file moves its ctime, which no tool can set back. Saves a
    tenth of a second of every start."""
    info = path.stat()
    stamp = [sha, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
    record = path.with_suffix(".verified")
    try:
        if json.loads(record.read_text()) == stamp:
            return True
    except (OSError, ValueError):
        pass
    if file_sha256(path) != sha:
        return False
    try:
        _atomic_write(record, json.dumps(stamp).encode())
    except OSError:
        pass  # a read-only cache: hash again next time
    return True


def _atomic_write(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _torch_export(st_model: Any, target: Path) -> None:
    """The transformer (token vectors out) as ONNX, batch and sequence length dynamic."""
    import warnings

    import torch

    transformer = st_model[0].auto_model

    class _TokenVectors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = st_model[0].tokenizer(["an example", "a longer example text"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    args = tuple(sample.get(n, torch.zeros_like(sample["input_ids"])) for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "token_vectors"]}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TokenVectors().eval(),
            args,
            str(target),
            input_names=names,
            output_names=["token_vectors"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def export_verified(st_model: Any, model_path: str | Path) -> Path:
    """Export `st_model` to ONNX, keep it only if it reproduces torch's vectors; the export's folder.

    Raises OnnxUnavailable when the model cannot be exported or the export does not match."""
    spec = read_pipeline(model_path)
    if spec is None:
        raise OnnxUnavailable(f"{model_path} is not a mean-pooling sentence-transformers model")
    folder = export_dir(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".onnx.tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        try:
            _torch_export(st_model, tmp)
        except Exception as exc:  # noqa: BLE001 - missing `onnx` package, an unsupported operator ...
            raise OnnxUnavailable(f"cannot export {model_path} to ONNX: {str(exc).splitlines()[0]}") from exc
        reference = np.asarray(
            st_model.encode(list(REFERENCE_TEXTS), normalize_embeddings=spec.normalize, show_progress_bar=False),
            dtype=np.float32,
        )
        try:
            difference = _max_difference(OnnxEncoder(tmp, model_path, spec), reference)
        except Exception as exc:  # noqa: BLE001 - onnxruntime missing or refusing the graph
            raise OnnxUnavailable(f"cannot run the ONNX export of {model_path}: {str(exc).splitlines()[0]}") from exc
        if not difference <= TOLERANCE:
            raise OnnxUnavailable(f"the ONNX export of {model_path} is {difference:.1e} away from torch's vectors")
        sha = file_sha256(tmp)
        onnx_name = f"model-{sha[:16]}.onnx"
        manifest = {
            "format": FORMAT,
            "model_path": str(model_path),
            "onnx_file": onnx_name,
            "onnx_sha256": sha,
            "max_abs_difference": difference,
            "reference_vectors": reference.tolist(),
        }
        # Named by content, so two processes exporting at once never rename over the file the
        # other's manifest describes; the manifest, written last, is what makes an export visible.
        os.replace(tmp, folder / onnx_name)
        _atomic_write(folder / MANIFEST_FILE, json.dumps(manifest).encode())
    finally:
        tmp.unlink(missing_ok=True)
    for stale in folder.glob("model-*.*"):
        if stale.stem != Path(onnx_name).stem:
            stale.unlink(missing_ok=True)
    return folder
