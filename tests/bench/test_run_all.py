"""``bench/run_all.py --docs-only`` rebuilds docs/benchmarks.md from the saved JSON and keeps
the hand-written parts: the notes block and every section below its ``HAND_WRITTEN`` line."""

from pathlib import Path

from bench import run_all

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def test_docs_only_rebuilds_the_document_as_it_stands(monkeypatch, tmp_path):
    """The checked-in document is what ``--docs-only`` writes: its generated part matches the
    JSON in bench/results/quick/, and no hand-written section is dropped."""
    copy = tmp_path / "benchmarks.md"
    copy.write_text(DOCS.read_text())
    monkeypatch.setattr(run_all, "DOCS", copy)
    run_all.main(["--quick", "--docs-only"])
    rebuilt = copy.read_text()
    assert run_all.HAND_WRITTEN in rebuilt
    assert "## Folders no one tuned for" in rebuilt.split(run_all.HAND_WRITTEN)[1]
    assert rebuilt == DOCS.read_text()


def test_a_document_without_hand_written_sections_gets_none(monkeypatch, tmp_path):
    copy = tmp_path / "benchmarks.md"
    copy.write_text("# Benchmarks\n\nold text\n")
    monkeypatch.setattr(run_all, "DOCS", copy)
    text = run_all.document(run_all.RESULTS / "quick")
    assert run_all.HAND_WRITTEN not in text and "old text" not in text
    assert text.startswith("# Benchmarks") and text.endswith("```\n")
