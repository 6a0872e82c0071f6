import logging

import pytest

from tests.support.fixtures import write_flickr8k
from training.data import DatasetError, load_flickr8k


def test_original_layout_reads_splits_and_reports_withheld_test_images(tmp_path, caplog):
    pairs = write_flickr8k(tmp_path, withheld_test=3)
    with caplog.at_level(logging.WARNING):
        dataset = load_flickr8k(tmp_path)
    assert dataset.layout == "original"
    assert dataset.split_sizes() == {"train": len(pairs), "dev": len(pairs), "test": 0}
    assert dataset.report.count("test images missing from Flicker8k_Dataset/") == 3
    assert "test split's 3 images are all missing" in caplog.text
    split = dataset.splits["train"]
    assert split.captions[0][0] == ["a", "red", "circle", "on", "white"]
    assert len(split.raw_captions[0]) == 5


def test_malformed_lines_and_missing_images_are_counted_not_fatal(tmp_path):
    write_flickr8k(tmp_path)
    token_file = tmp_path / "Flickr8k_text" / "Flickr8k.token.txt"
    with token_file.open("a") as handle:
        handle.write("no tab on this line\nbroken.jpg#0\t\nnot_an_image#0\tcaption\n")
    (tmp_path / "Flicker8k_Dataset" / "red_circle_white.jpg").unlink()
    dataset = load_flickr8k(tmp_path)
    assert dataset.report.count("malformed caption lines") == 3
    assert dataset.report.count("train images missing from Flicker8k_Dataset/") == 1
    assert "red_circle_white.jpg" not in dataset.splits["train"].image_ids
    summary = "\n".join(dataset.report.summary())
    assert "malformed caption lines: 3" in summary and "no tab on this line" in summary


def test_kaggle_layout(tmp_path):
    pairs = write_flickr8k(tmp_path / "orig")
    images = tmp_path / "kaggle" / "Images"
    images.mkdir(parents=True)
    lines = ["image,caption"]
    for name, caption in pairs:
        (tmp_path / "orig" / "Flicker8k_Dataset" / name).rename(images / name)
        lines += [f'{name},"{caption}, again"'] + [f"{name},{caption}"] * 4
    lines.append("lonely_line_without_caption.jpg,")
    (tmp_path / "kaggle" / "captions.txt").write_text("\n".join(lines) + "\n")
    dataset = load_flickr8k(tmp_path / "kaggle")
    assert dataset.layout == "kaggle"
    assert sum(dataset.split_sizes().values()) == len(pairs)
    assert dataset.report.count("malformed caption lines") == 1
    first = dataset.splits["train"].raw_captions[0]
    assert any(", again" in c for c in first)


def test_not_a_dataset_gives_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not a Flickr8k folder"):
        load_flickr8k(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_flickr8k(tmp_path / "nope")
    (tmp_path / "captions.txt").write_text("file,text\n")
    with pytest.raises(DatasetError, match="header is 'image,caption'"):
        load_flickr8k(tmp_path)
