"""Real data: easy-VQA through its package (official split), the pydoc text corpus."""

from __future__ import annotations

import re

import pytest

from liquidgen.corpora.text import (
    LICENSE,
    SOURCE,
    clean_documents,
    is_validation,
    load_text_corpus,
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
    corpus = load_text_corpus()
    assert corpus == load_text_corpus()
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
