"""Real data: easy-VQA through its package (official split), the pydoc text corpus."""

from __future__ import annotations

import re

import pytest

from liquidgen.corpora.text import (
    LICENSE,
    SOURCE,
    clean_documents,
    docstring_documents,
    is_validation,
    load_text_corpus,
    stdlib_sources,
)
from liquidgen.errors import ConfigError
from liquidgen.world.parse import parse

easy_vqa = pytest.importorskip("easy_vqa")
from liquidgen.corpora import easy_vqa as evqa  # noqa: E402  (needs the package)


def test_easy_vqa_keeps_the_official_split() -> None:
    train, test = evqa.load_questions("train"), evqa.load_questions("test")
    assert (len(train), len(test)) == (38575, 9673)
    assert (len(evqa.image_paths("train")), len(evqa.image_paths("test"))) == (4000, 1000)
    image, question, answer = test[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    assert question.endswith("?") and answer in evqa.answers()
    assert len(set(evqa.answers())) == 13
    assert set(test.answers) <= set(evqa.answers())
    with pytest.raises(ConfigError):
        evqa.load_questions("validation")


def test_easy_vqa_captions_agree_with_the_questions() -> None:
    captions = evqa.load_captions("test")
    assert 950 <= len(captions) <= 1000
    attrs = evqa.image_attributes("test")
    full = [i for i, a in attrs.items() if a.shape and a.color]
    assert len(full) >= 850
    questions = evqa.load_questions("test")
    for text, answer, image_id in zip(
        questions.questions, questions.answers, questions.image_ids, strict=True
    ):
        a = attrs[image_id]
        if text == "what color is the shape?" and a.color:
            assert answer == a.color
        if text == "what shape is in the image?" and a.shape:
            assert answer == a.shape
        if text == f"is there a {a.shape}?" and a.shape:
            assert answer == "yes"
    image, caption = captions[0]
    assert image.size == (64, 64) and caption.startswith("a ") and caption.endswith(".")
    assert evqa.caption_for(evqa.ImageAttributes("circle", "teal")) == "a teal circle."
    assert evqa.caption_for(evqa.ImageAttributes(None, "teal")) == "a teal shape."
    assert evqa.caption_for(evqa.ImageAttributes(None, None)) is None


def test_parser_reads_easy_vqa_images() -> None:
    attrs = evqa.image_attributes("test")
    paths = evqa.image_paths("test")
    known = [i for i, a in attrs.items() if a.shape and a.color][:60]
    hits = 0
    for i in known:
        scene = parse(evqa.load_image(paths[i]), vocabulary=evqa.EASY_VQA_VOCABULARY)
        hits += [(o.shape, o.color) for o in scene.objects] == [(attrs[i].shape, attrs[i].color)]
    assert hits >= 59


def test_text_corpus_is_clean_deduplicated_and_split() -> None:
    corpus = load_text_corpus("pydoc")
    assert corpus == load_text_corpus("pydoc")
    assert len(corpus.train) > 100 and len(corpus.validation) > 5
    assert not set(corpus.train) & set(corpus.validation)
    everything = corpus.train + corpus.validation
    assert len(set(everything)) == len(everything)
    assert sum(map(len, everything)) > 200_000
    for doc in everything:
        assert "::=" not in doc and ">>>" not in doc and "+---" not in doc
        assert not re.search(r"\*\*[A-Za-z ]+\*\*", doc)  # reST bold markup removed
        assert len(doc.split()) >= 40
    assert "pydoc_data" in SOURCE and "PSF" in LICENSE
    assert all(is_validation(d) for d in corpus.validation)
    with pytest.raises(ConfigError):
        load_text_corpus(validation_fraction=1.5)


def test_cleaning_rules() -> None:
    topic = (
        "Title\n*****\n\nThe first paragraph has enough words to be kept because it is a\n"
        "real sentence about the language and how it works in practice. [3]\n\n"
        "   x ::= y | z\n\n   >>> print(1)\n\n"
        "The first paragraph has enough words to be kept because it is a\n"
        "real sentence about the language and how it works in practice.\n\n"
        "A **bold** second sentence that is long enough to count as prose here, with words.\n"
    )
    docs = clean_documents({"t": topic, "u": topic}, min_words=10)
    assert len(docs) == 1  # the second topic only repeats paragraphs
    title, first, second = docs[0].split("\n\n")
    assert title == "Title"
    assert first.endswith("in practice.") and "[3]" not in first
    assert second.startswith("A bold second")


def test_stdlib_docs_adds_the_standard_librarys_docstrings_to_pydoc() -> None:
    pydoc, larger = load_text_corpus("pydoc"), load_text_corpus("stdlib-docs")
    assert load_text_corpus() == larger  # the default held-out text of evaluations
    # the same hash split: pydoc's documents keep their side in the larger corpus
    assert set(pydoc.train) <= set(larger.train)
    assert set(pydoc.validation) <= set(larger.validation)
    assert not set(larger.train) & set(larger.validation)
    assert sum(map(len, larger.train)) > 4 * sum(map(len, pydoc.train))
    assert "docstrings" in larger.source and larger.source != pydoc.source
    titles = {doc.split("\n\n", 1)[0] for doc in larger.train + larger.validation}
    assert {"json", "collections", "argparse"} <= titles  # one document per module
    assert not {t for t in titles if t.startswith(("test", "idlelib", "encodings."))}
    with pytest.raises(ConfigError, match="unknown text corpus"):
        load_text_corpus("wiki")


def test_docstring_documents_keep_public_prose_under_qualified_names() -> None:
    source = (
        '"""A module about widgets, with enough words in this sentence to be read as prose."""\n'
        "class Widget:\n"
        '    """A widget holds parts together, and this sentence says so in plain words."""\n'
        "    def spin(self):\n"
        '        """Spin the widget round and round until it is told to stop again.\n\n'
        '        >>> Widget().spin()\n        """\n'
        "    def _hidden(self):\n"
        '        """A private helper that is left out of the corpus even if it is prose."""\n'
        "def twin():\n"
        '    """A widget holds parts together, and this sentence says so in plain words."""\n'
    )
    docs = docstring_documents({"widgets": source, "broken": "def (:\n"}, min_words=5)
    assert docs == [
        "widgets\n\n"
        "A module about widgets, with enough words in this sentence to be read as prose.\n\n"
        "Widget\n\nA widget holds parts together, and this sentence says so in plain words.\n\n"
        "Widget.spin\n\nSpin the widget round and round until it is told to stop again."
    ]  # private names, doctests and the repeated paragraph are dropped; bad syntax skipped


def test_stdlib_sources_skip_tests_and_tools(tmp_path) -> None:
    for rel in ("json/__init__.py", "json/decoder.py", "test/test_json.py", "idlelib/a.py",
                "test_x.py", "site-packages/pkg/__init__.py"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text('"""doc"""\n')
    assert sorted(stdlib_sources(tmp_path)) == ["json", "json.decoder"]
