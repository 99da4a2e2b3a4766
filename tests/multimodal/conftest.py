"""Fixtures for multimodal tests: a generated report PDF, broken files, a scripted vision model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pymupdf
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from graphcraft.eval.multimodal_data import SampleReport, make_sample_report
from graphcraft.ingestion.ocr import tesseract_available
from graphcraft.ingestion.pdf_multimodal import load_pdf_multimodal


class RecordingVisionModel(BaseChatModel):
    """Answers every call with ``reply`` and keeps the messages it was sent."""

    reply: str = "A bar chart."
    calls: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "recording-vision"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.calls.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> SampleReport:
    return make_sample_report(tmp_path_factory.mktemp("mm") / "report.pdf")


@pytest.fixture(scope="session")
def report_docs(report: SampleReport):
    if not tesseract_available():
        pytest.skip("Tesseract not installed")
    return load_pdf_multimodal(report.path)


def write_encrypted(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    doc.close()
    return path


def write_zero_pages(path: Path) -> Path:
    """A syntactically valid PDF whose page tree is empty (PyMuPDF refuses to save one)."""
    path.write_bytes(
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )
    return path


def write_damaged(path: Path) -> Path:
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    return path


def write_bad_image(path: Path) -> Path:
    """A file named .png whose bytes are a PNG header followed by garbage."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 64)
    return path


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    """One file of each unreadable kind, keyed by what is wrong with it."""
    return {
        "damaged": write_damaged(tmp_path / "damaged.pdf"),
        "encrypted": write_encrypted(tmp_path / "encrypted.pdf"),
        "empty": write_zero_pages(tmp_path / "empty.pdf"),
        "bad_image": write_bad_image(tmp_path / "bad.png"),
    }


@pytest.fixture
def vision_model() -> RecordingVisionModel:
    return RecordingVisionModel(reply="A bar chart of installed capacity rising each year.", calls=[])
