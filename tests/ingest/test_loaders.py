"""Loaders: every supported format, BEIR folders, walking order, and a failure for every kind of bad input."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pytest

from ingest.loaders import BINARY, EMPTY, NO_TEXT, NOT_UTF8, TITLE_CHARS, UNSUPPORTED, iter_documents
from ingest.records import LoadFailure, SourceDocument

HTML_PAGE = """<!DOCTYPE html>
<html>
<head>
  <title>  Opening   hours </title>
  <style>body { color: red; }</style>
  <meta name="description" content="not visible">
</head>
<body>
  <script>var tracking = "not visible";</script>
  <noscript>Enable JavaScript</noscript>
  <template><p>template text</p></template>
  <h1>Opening hours</h1>
  <p>We are open
     every <b>weekday</b>.</p>
  <ul><li>Monday: 9-17</li><li>Saturday: closed</li></ul>
  <div><div>Nested &amp; deep</div></div>
</body>
</html>
"""


def _pdf_bytes(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF whose pages show the given lines in Helvetica (text pypdf can extract)."""
    page_ids = [4 + 2 * index for index in range(len(pages))]
    kids = " ".join(f"{page_id} 0 R" for page_id in page_ids)
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = " T* ".join(f"({line}) Tj" for line in lines)
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode()
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    info_id = 4 + 2 * len(pages)
    if title is not None:
        objects[info_id] = f"<< /Title ({title}) >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number]
    info = f" /Info {info_id} 0 R" if title is not None else ""
    out += f"trailer\n<< /Size {size} /Root 1 0 R{info} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def _blank_pdf(path: Path) -> None:
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=612, height=792)
    with path.open("wb") as handle:
        writer.write(handle)


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _jsonl(*records: object) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _load(*paths: Path) -> tuple[list[SourceDocument], list[LoadFailure]]:
    results = list(iter_documents(list(paths)))
    documents = [item for item in results if isinstance(item, SourceDocument)]
    failures = [item for item in results if isinstance(item, LoadFailure)]
    assert len(documents) + len(failures) == len(results)
    return documents, failures


def _only_document(path: Path) -> SourceDocument:
    documents, failures = _load(path)
    assert failures == []
    assert len(documents) == 1
    return documents[0]


def _only_failure(path: Path) -> LoadFailure:
    documents, failures = _load(path)
    assert documents == []
    assert len(failures) == 1
    return failures[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A folder with one file of every format, plus files and folders a walk must skip."""
    root = tmp_path / "corpus"
    _write(root / "notes.txt", "Plain notes.\nSecond line.\n")
    _write(
        root / "policies" / "refunds.md", "Intro line.\n\n# Refunds\n\nWithin 30 days.\n## Details\nMore.\n"
    )
    _write(root / "policies" / ".draft.md", "# Hidden draft\n")
    _write(root / ".hidden" / "secret.txt", "hidden folder\n")
    _write(root / "page.html", HTML_PAGE)
    _write(root / "manual.pdf", _pdf_bytes([["Assembly manual", "Step one."], ["Step two."]], title="Manual"))
    _write(root / "data.jsonl", _jsonl({"id": "faq-1", "title": "First", "text": "Answer one."}))
    _write(root / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    _write(root / "README", "no extension\n")
    return root


# --- Walking --------------------------------------------------------------------------------------------


def test_directory_walk_is_sorted_recursive_and_skips_hidden_and_unsupported(corpus: Path) -> None:
    documents, failures = _load(corpus)

    assert failures == []
    assert [doc.external_id for doc in documents] == [
        "faq-1",
        "manual.pdf",
        "notes.txt",
        "page.html",
        "policies/refunds.md",
    ]


def test_file_documents_carry_relative_id_absolute_source_and_format(corpus: Path) -> None:
    documents, _ = _load(corpus)
    refunds = next(doc for doc in documents if doc.external_id == "policies/refunds.md")

    assert refunds.source == str((corpus / "policies" / "refunds.md").absolute())
    assert Path(refunds.source).is_absolute()
    assert refunds.metadata == {"path": "policies/refunds.md", "format": "md"}


def test_file_named_explicitly_is_known_by_its_name(corpus: Path) -> None:
    doc = _only_document(corpus / "policies" / "refunds.md")

    assert doc.external_id == "refunds.md"
    assert doc.metadata == {"path": "refunds.md", "format": "md"}


def test_hidden_file_named_explicitly_is_loaded(corpus: Path) -> None:
    assert _only_document(corpus / "policies" / ".draft.md").title == "Hidden draft"


def test_several_arguments_are_loaded_in_the_order_given(corpus: Path) -> None:
    documents, _ = _load(corpus / "page.html", corpus / "notes.txt")

    assert [doc.external_id for doc in documents] == ["page.html", "notes.txt"]


def test_documents_stream_lazily(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    stream = iter_documents([path])
    # Nothing is read before the first document is asked for.
    _write(path, "written after the call\n")

    assert isinstance(stream, Iterator)
    assert next(stream).text == "written after the call\n"


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    _write(tmp_path / "root" / "real" / "a.txt", "text\n")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "root" / "real", target_is_directory=True)

    documents, failures = _load(tmp_path / "root")

    assert failures == []
    assert [doc.external_id for doc in documents] == ["real/a.txt"]


# --- Formats --------------------------------------------------------------------------------------------


def test_txt_title_is_its_first_line_and_the_text_is_kept(corpus: Path) -> None:
    doc = _only_document(corpus / "notes.txt")

    assert doc.title == "Plain notes."
    assert doc.text == "Plain notes.\nSecond line.\n"
    assert doc.metadata["format"] == "txt"


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("\n  \n   Quarterly report 2025  \nBody.\n", "Quarterly report 2025"),
        ("=====\n----\nAfter the rule\n", "After the rule"),
        ("==== ----\n", "rule.txt"),  # no line says anything: the file's name
    ],
)
def test_txt_title_is_the_first_line_with_words_or_the_file_name(
    tmp_path: Path, text: str, title: str
) -> None:
    assert _only_document(_write(tmp_path / "rule.txt", text)).title == title


def test_long_first_line_title_is_cut_at_a_word(tmp_path: Path) -> None:
    line = " ".join(f"word{number}" for number in range(60))

    title = _only_document(_write(tmp_path / "long.txt", line + "\n")).title

    assert title is not None and title.endswith("…") and len(title) <= TITLE_CHARS
    assert line.startswith(title.removesuffix("…")) and line[len(title) - 1] == " "


def test_markdown_title_is_the_first_level_one_heading(corpus: Path) -> None:
    assert _only_document(corpus / "policies" / "refunds.md").title == "Refunds"


def test_markdown_title_ignores_code_blocks_and_deeper_headings(tmp_path: Path) -> None:
    text = "## Section\n\n```sh\n# a shell comment\n```\n\n# Real title #\n"

    assert _only_document(_write(tmp_path / "doc.md", text)).title == "Real title"


def test_markdown_without_heading_has_no_title(tmp_path: Path) -> None:
    assert _only_document(_write(tmp_path / "doc.md", "#hashtag is not a heading\n")).title is None


def test_byte_order_mark_is_stripped_and_newlines_normalized(tmp_path: Path) -> None:
    path = _write(tmp_path / "doc.md", "\ufeff# Title\r\nline one\r\nline two\rline three\n".encode())

    doc = _only_document(path)

    assert doc.text == "# Title\nline one\nline two\nline three\n"
    assert doc.title == "Title"


def test_html_keeps_visible_text_with_block_structure(corpus: Path) -> None:
    doc = _only_document(corpus / "page.html")

    assert doc.title == "Opening hours"
    assert doc.text == (
        "Opening hours\n\nWe are open every weekday.\n\nMonday: 9-17\nSaturday: closed\n\nNested & deep"
    )
    assert doc.metadata == {"path": "page.html", "format": "html"}


def test_htm_is_html_and_pre_keeps_its_whitespace(tmp_path: Path) -> None:
    path = _write(tmp_path / "code.HTM", "<p>Run:</p><pre>  make\n    test</pre><p>Done.</p>")

    doc = _only_document(path)

    assert doc.title is None
    assert doc.text == "Run:\n\n  make\n    test\n\nDone."
    assert doc.metadata["format"] == "html"


def test_html_without_visible_text_fails(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "blank.html", "<html><head><title>T</title></head><body><script>x()</script></body>"
    )

    assert _only_failure(path).reason == NO_TEXT


def test_pdf_pages_are_joined_by_blank_lines_and_title_read_from_metadata(corpus: Path) -> None:
    doc = _only_document(corpus / "manual.pdf")

    assert doc.title == "Manual"
    assert doc.text == "Assembly manual\nStep one.\n\nStep two."
    assert doc.metadata == {"path": "manual.pdf", "format": "pdf"}


def test_pdf_without_title_metadata_has_no_title(tmp_path: Path) -> None:
    assert _only_document(_write(tmp_path / "a.pdf", _pdf_bytes([["Hello"]]))).title is None


def test_jsonl_ids_titles_and_metadata(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "docs.jsonl",
        _jsonl(
            {"id": "a", "title": "Alpha", "text": "First.", "metadata": {"lang": "en"}, "year": 2024},
            {"_id": 7, "text": "Second."},
            {"text": "Third, no id.", "title": "  "},
        )
        + "\n",  # a trailing blank line is not a record
    )

    documents, failures = _load(path)

    assert failures == []
    assert [(doc.external_id, doc.title, doc.text) for doc in documents] == [
        ("a", "Alpha", "First."),
        ("7", None, "Second."),
        ("docs.jsonl#3", None, "Third, no id."),
    ]
    assert documents[0].metadata == {"lang": "en", "year": 2024}
    assert documents[1].metadata == {}
    assert all(doc.source == str(path.absolute()) for doc in documents)


def test_jsonl_fallback_id_uses_path_relative_to_root(tmp_path: Path) -> None:
    _write(tmp_path / "root" / "sub" / "docs.jsonl", _jsonl({"text": "x"}, {"text": "y"}))

    documents, _ = _load(tmp_path / "root")

    assert [doc.external_id for doc in documents] == ["sub/docs.jsonl#1", "sub/docs.jsonl#2"]


def test_jsonl_text_newlines_are_normalized(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", _jsonl({"id": "1", "text": "a\r\nb"}))

    assert _only_document(path).text == "a\nb"


# --- BEIR -----------------------------------------------------------------------------------------------


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "scifact"
    _write(
        root / "corpus.jsonl",
        _jsonl(
            {"_id": "d1", "title": "Zinc", "text": "Zinc helps.", "metadata": {}, "year": 2001},
            {"_id": "d2", "title": "", "text": "No title here."},
        ),
    )
    _write(root / "queries.jsonl", _jsonl({"_id": "q1", "text": "does zinc help?"}))
    _write(root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    _write(root / "extra" / "notes.txt", "not part of the corpus\n")
    return root


def test_beir_folder_reads_only_the_corpus(beir: Path) -> None:
    documents, failures = _load(beir)

    assert failures == []
    assert [(doc.external_id, doc.title, doc.text) for doc in documents] == [
        ("d1", "Zinc", "Zinc helps."),
        ("d2", None, "No title here."),
    ]
    assert documents[0].metadata == {"year": 2001}
    assert {doc.source for doc in documents} == {str((beir / "corpus.jsonl").absolute())}


def test_beir_folder_inside_a_walked_directory(beir: Path) -> None:
    _write(beir.parent / "a.txt", "before\n")
    _write(beir.parent / "z.txt", "after\n")

    documents, failures = _load(beir.parent)

    assert failures == []
    assert [doc.external_id for doc in documents] == ["a.txt", "d1", "d2", "z.txt"]


# --- Failures -------------------------------------------------------------------------------------------


def test_missing_path_fails(tmp_path: Path) -> None:
    missing = tmp_path / "nope"

    assert _only_failure(missing) == LoadFailure(missing, "not found")


def test_unsupported_file_named_explicitly_fails(corpus: Path) -> None:
    assert _only_failure(corpus / "image.png") == LoadFailure(corpus / "image.png", UNSUPPORTED)


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.html", "empty.pdf", "empty.jsonl"])
@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n"])
def test_empty_files_fail(tmp_path: Path, name: str, content: bytes) -> None:
    assert _only_failure(_write(tmp_path / name, content)).reason == EMPTY


def test_byte_order_mark_only_is_empty(tmp_path: Path) -> None:
    assert _only_failure(_write(tmp_path / "bom.txt", "\ufeff \n".encode())).reason == EMPTY


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("nul.txt", b"text\x00with a NUL byte\n"),
        ("noise.md", bytes(byte or 1 for byte in random.Random(0).randbytes(512))),
        ("image.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("blob.jsonl", b'{"text": "a"}\n\x00\x01\x02\n'),
    ],
)
def test_binary_or_non_utf8_text_fails(tmp_path: Path, name: str, content: bytes) -> None:
    assert _only_failure(_write(tmp_path / name, content)).reason == BINARY


@pytest.mark.parametrize(
    ("name", "encoding", "text"),
    [
        ("latin1.md", "latin-1", "# Café\n\ncaf\xe9 au lait\n"),
        ("cp1252.txt", "cp1252", "Crème brûlée, naïve façade, “quoted” – €5.\n"),
        ("short.txt", "latin-1", "caf\xe9 au lait\n"),
        ("utf16.txt", "utf-16", "Zoë’s résumé — UTF-16 with its byte-order mark.\r\nSecond line.\n"),
        ("utf16be.html", "utf-16-be", "\ufeff<p>Grüße aus Köln</p>"),
    ],
)
def test_text_not_in_utf8_is_decoded_in_a_detected_encoding(
    tmp_path: Path, name: str, encoding: str, text: str
) -> None:
    doc = _only_document(_write(tmp_path / name, text.encode(encoding)))

    expected = text.lstrip("\ufeff").replace("\r\n", "\n")
    if name.endswith(".html"):
        expected = "Grüße aus Köln"
    assert doc.text == expected
    assert doc.metadata["encoding"] in {"cp1252", "utf-16"}


def test_utf8_text_records_no_encoding(corpus: Path) -> None:
    assert "encoding" not in _only_document(corpus / "notes.txt").metadata


@pytest.mark.parametrize(
    "content",
    [b"%PDF-1.4\ngarbage\n%%EOF\n", b"this is not a pdf at all", _pdf_bytes([["Hello"]])[:120]],
)
def test_malformed_pdf_fails(tmp_path: Path, content: bytes) -> None:
    assert _only_failure(_write(tmp_path / "broken.pdf", content)).reason.startswith("malformed PDF")


def test_pdf_repair_messages_stay_off_the_terminal_and_are_logged_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A wrong startxref offset: pypdf repairs it, and logs warnings while it does.
    data = _pdf_bytes([["Hello"]])
    data = data[: data.rindex(b"startxref")] + b"startxref\n99\n%%EOF\n"
    path = _write(tmp_path / "repaired.pdf", data)
    caplog.set_level(logging.DEBUG)

    assert "Hello" in _only_document(path).text

    assert not [record for record in caplog.records if record.name.startswith("pypdf")]
    reported = [record for record in caplog.records if record.name == "ingest.loaders"]
    assert reported and all(record.levelno == logging.DEBUG for record in reported)
    assert "startxref" in reported[0].getMessage() and str(path) in reported[0].getMessage()
    assert logging.getLogger("pypdf").propagate  # restored


def test_pdf_without_text_fails(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    _blank_pdf(path)

    assert _only_failure(path).reason == NO_TEXT


def test_bad_jsonl_lines_fail_one_by_one_and_good_lines_still_load(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "ok-1", "text": "fine"}),
        '{"id": "broken", "text": ',
        json.dumps({"id": "no-text", "title": "only a title"}),
        json.dumps({"id": "blank-text", "text": "   "}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"id": ["bad"], "text": "bad id"}),
        json.dumps({"id": "bad-meta", "text": "x", "metadata": "nope"}),
        json.dumps({"id": "ok-2", "text": "also fine"}),
    ]
    path = _write(tmp_path / "mixed.jsonl", "\n".join(lines).encode() + b"\n" + b'{"text": "\xff"}\n')

    documents, failures = _load(path)

    # A record with only a title is a document (some BEIR corpora have them); a blank text alone is not.
    assert [doc.external_id for doc in documents] == ["ok-1", "no-text", "ok-2"]
    assert documents[1].title == "only a title" and documents[1].text == ""
    assert all(failure.path == path for failure in failures)
    assert [failure.reason.split(":")[0] for failure in failures] == [f"line {n}" for n in (2, 4, 5, 6, 7, 9)]
    assert "malformed JSON" in failures[0].reason
    assert "no 'text'" in failures[1].reason
    assert failures[-1].reason == f"line 9: {NOT_UTF8}"


def test_unreadable_file_fails_and_the_walk_goes_on(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, for whom file permissions do not stop reading: simulate the denial.
    locked = corpus / "notes.txt"
    real_read_bytes = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)

    documents, failures = _load(corpus)

    assert failures == [LoadFailure(locked, "unreadable: Permission denied", "notes.txt")]
    assert len(documents) == 4


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_directory_fail_by_permission(tmp_path: Path) -> None:
    locked_file = _write(tmp_path / "root" / "a.txt", "secret\n")
    locked_dir = tmp_path / "root" / "b"
    _write(locked_dir / "c.txt", "secret\n")
    locked_file.chmod(0)
    locked_dir.chmod(0)
    try:
        _, failures = _load(tmp_path / "root")
    finally:
        locked_file.chmod(0o644)
        locked_dir.chmod(0o755)

    assert [(failure.path, failure.reason) for failure in failures] == [
        (locked_file, "unreadable: Permission denied"),
        (locked_dir, "unreadable: Permission denied"),
    ]


def test_failures_do_not_stop_the_batch(corpus: Path, tmp_path: Path) -> None:
    _write(corpus / "bad.txt", b"\x00\x01")
    _write(corpus / "empty.md", "")

    documents, failures = _load(tmp_path / "missing", corpus)

    assert len(documents) == 5
    assert [(failure.path.name, failure.reason) for failure in failures] == [
        ("missing", "not found"),
        ("bad.txt", BINARY),
        ("empty.md", EMPTY),
    ]
