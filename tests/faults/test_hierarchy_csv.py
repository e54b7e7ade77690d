"""Issue 9.5: hierarchy.csv as spreadsheet programs write it, and its mistakes named."""

from __future__ import annotations

import pytest

from hexssl.data.datasets import build_dataset
from hexssl.data.hierarchy import parse_hierarchy, read_hierarchy
from hexssl.errors import DataError

from .test_bad_inputs import write_tree


def test_bom_and_crlf_are_read():
    data = "class,superclass,name\r\ncat,animal,Cat\r\ndog,animal,Dog\r\n".encode("utf-8-sig")
    assert read_hierarchy(data, "h.csv") == {"cat": "animal", "dog": "animal"}


def test_quoted_cells_and_comments():
    assert parse_hierarchy('# comment\n"cat",animal,"Cat, the"\n') == {"cat": "animal"}


def test_header_in_another_order_is_refused():
    with pytest.raises(DataError, match=r"header 'class,name'"):
        parse_hierarchy("class,name\ncat,Cat\n")


def test_conflicting_duplicate_is_refused_identical_one_is_fine():
    assert parse_hierarchy("cat,animal\ncat,animal\n") == {"cat": "animal"}
    with pytest.raises(DataError, match=r"line 2: class 'cat' has superclass 'pet'.*line 1"):
        parse_hierarchy("cat,animal\ncat,pet\n")


@pytest.mark.parametrize("text", ["cat\n", "cat,animal,Cat,extra\n", ",animal\n", "cat,\n"])
def test_malformed_rows_name_their_line(text):
    with pytest.raises(DataError, match="line 1"):
        parse_hierarchy(text)


def test_non_utf8_names_the_byte():
    with pytest.raises(DataError, match="0xe9 at offset 8"):
        read_hierarchy(b"cat,anim\xe9l\n", "h.csv")


def test_classes_without_images_are_not_counted_and_gaps_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXSSL_CACHE", str(tmp_path / "cache"))
    root = write_tree(tmp_path / "tree", b"class,superclass\ncat,animal\nbird,flyer\n")
    with pytest.warns(UserWarning) as caught:
        ds = build_dataset("imagefolder", root, "train", image_size=8)
    messages = " ".join(str(w.message) for w in caught)
    assert "['dog']" in messages and "missing from hierarchy.csv" in messages
    assert "['bird']" in messages and "no images" in messages
    assert ds.class_names == ["cat", "dog"]  # bird has no images: not a class
    assert ds.superclass_names == ["animal"]  # flyer only holds bird
    assert ds.superlabels.tolist() == [0, 0, -1, -1]
