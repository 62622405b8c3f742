"""Reading and batching labelled text (edgeworth.textdata), against the files written by hand here and SST-2's
own line count."""
import pytest
import torch

from edgeworth.textdata import LabelledText, default_sst2_dir, padding_collate, read_labelled_text


def test_sst2_train_and_dev_read_whole():
    train = read_labelled_text(default_sst2_dir() / "train.tsv")
    dev = read_labelled_text(default_sst2_dir() / "dev.tsv", label_names=train.label_names)
    # The README of the data: 67 349 and 872 labelled sentences, label 1 positive, 0 negative.
    assert (len(train), len(dev)) == (67_349, 872)
    assert train.label_names == ["0", "1"] and set(train.labels) == {0, 1}
    with open(default_sst2_dir() / "dev.tsv", encoding="utf-8") as f:
        first = f.read().splitlines()[1].split("\t")
    assert (dev.texts[0], dev.labels[0]) == (first[0], int(first[1]))


def test_csv_with_quotes_string_labels_and_limit(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label,extra\n"good, really",pos,1\nbad,neg,2\n"so ""so""",neutral,3\nfine,pos,4\n',
                    encoding="utf-8")
    data = read_labelled_text(path)
    assert data.texts == ["good, really", "bad", 'so "so"', "fine"]
    assert data.label_names == ["neg", "neutral", "pos"] and data.labels == [2, 0, 1, 2]
    assert read_labelled_text(path, limit=2).texts == ["good, really", "bad"]
    shared = read_labelled_text(path, label_names=["pos", "neg", "neutral"])
    assert shared.labels == [0, 1, 2, 0]


@pytest.mark.parametrize("content,kwargs,name", [
    ("sentence\tlabel\n", {}, "path"),
    ("words\tlabel\nhi\t1\n", {}, "text_column"),
    ("sentence\ty\nhi\t1\n", {}, "label_column"),
    ("sentence\tlabel\nhi\t1\n", {"limit": 0}, "limit"),
    ("sentence\tlabel\nhi\t-1\n", {}, "label_column"),
    ("sentence\tlabel\nhi\t2\n", {"label_names": ["0", "1"]}, "label_column"),
])
def test_bad_files_name_the_parameter(tmp_path, content, kwargs, name):
    path = tmp_path / "data.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=name):
        read_labelled_text(path, **kwargs)


@pytest.mark.parametrize("content,kwargs,message", [
    ("sentence\tlabel\ngood\t1\nno label here\n", {}, "line 3 of .* has no 'label' value"),
    ("sentence\tlabel\ngood\t1\nblank label\t \n", {}, "line 3 of .* has no 'label' value"),
    ("sentence\tlabel\tuser\ngood\t1\tu1\nbad\t0\n", {"user_column": "user"}, "line 3 of .* has no 'user'"),
    ("sentence\tlabel\ngood\t1\textra\n", {}, "line 2 of .* has more fields than the header's 2"),
])
def test_malformed_rows_are_named_by_line(tmp_path, content, kwargs, message):
    path = tmp_path / "rows.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="path: " + message):
        read_labelled_text(path, **kwargs)


def test_missing_file():
    with pytest.raises(ValueError, match="path"):
        read_labelled_text("/nonexistent/train.tsv")


def test_padding_collate():
    batch = [(torch.tensor([101, 7, 102]), torch.tensor(1)), (torch.tensor([101, 102]), torch.tensor(0))]
    ids, mask, labels = padding_collate(pad_id=0)(batch)
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]] and labels.tolist() == [1, 0]


def test_labelled_text_length():
    assert len(LabelledText(texts=["a", "b"], labels=[0, 1], label_names=["0", "1"], path="x")) == 2
