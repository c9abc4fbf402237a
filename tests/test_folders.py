from collections import Counter
from pathlib import PurePosixPath as P

import pytest

from grounded_sam.labeling.folders import (
    IMAGE_EXTENSIONS,
    assign_split,
    check_split_ratios,
    find_images,
    normalize_extensions,
    output_names,
)


def _touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_finds_every_common_format_case_insensitively_top_level_only(tmp_path):
    _touch(tmp_path, "a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.tif", "g.TIFF", "notes.txt", "sub/h.jpg")
    found = find_images(tmp_path)
    assert [str(path) for path in found] == ["a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.tif", "g.TIFF"]


@pytest.mark.parametrize("extension", [".jpg", "jpg", ".JPG", ["jpg"]])
def test_extension_filter_like_autodistill(tmp_path, extension):
    _touch(tmp_path, "a.jpg", "b.JPG", "c.png")
    assert [str(path) for path in find_images(tmp_path, extension)] == ["a.jpg", "b.JPG"]


def test_recursive_walk_survives_symlink_loops_and_skips_the_output_folder(tmp_path):
    _touch(tmp_path, "a.jpg", "sub/b.jpg", "sub/deeper/c.png", "out/train/images/a.jpg")
    (tmp_path / "sub" / "loop").symlink_to("..", target_is_directory=True)
    (tmp_path / "self").symlink_to(".", target_is_directory=True)
    (tmp_path / "dir.jpg").mkdir()
    found = find_images(tmp_path, recursive=True, exclude=[tmp_path / "out"])
    assert [str(path) for path in found] == ["a.jpg", "sub/b.jpg", "sub/deeper/c.png"]


def test_missing_input_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Input folder not found"):
        find_images(tmp_path / "nope")


@pytest.mark.parametrize("bad", ["", ".", [], [3]])
def test_bad_extension_raises(bad):
    with pytest.raises(ValueError, match="extension"):
        normalize_extensions(bad)


def test_default_extensions():
    assert normalize_extensions(None) == IMAGE_EXTENSIONS


def test_output_names_flatten_and_stay_distinct():
    sources = [
        P("dog.jpg"),
        P("a/dog.jpg"),
        P("b/dog.jpg"),
        P("b/c/dog.jpg"),
        P("x.jpg"),
        P("x.png"),
        P("Y.jpg"),
        P("y.jpg"),
        P("odd__name.jpg"),
        P("odd/name.jpg"),
    ]
    names = output_names(sources)
    assert names[P("dog.jpg")] == "dog.jpg"
    assert names[P("a/dog.jpg")] == "a__dog.jpg"
    assert names[P("b/c/dog.jpg")] == "b__c__dog.jpg"
    # stems that would share a YOLO label file, or clash on case-insensitive disks, get a hash of their path
    for clash in ("x.jpg", "x.png", "Y.jpg", "y.jpg", "odd__name.jpg"):
        stem, suffix = clash.rsplit(".", 1)
        assert names[P(clash)].startswith(stem + "-") and names[P(clash)].endswith("." + suffix)
    stems = Counter(name.rsplit(".", 1)[0].casefold() for name in names.values())
    assert max(stems.values()) == 1
    assert all("/" not in name for name in names.values())
    hidden = output_names([P(".hidden.jpg"), P("_hidden.jpg")])  # image globs skip hidden files: never write one
    assert all(not name.startswith(".") for name in hidden.values()) and len(set(hidden.values())) == 2


def test_output_names_are_stable_when_resuming_and_when_images_are_added():
    first = [P("dog.jpg"), P("cat.jpg")]
    named = output_names(first)
    grown = output_names([*first, P("dog.png"), P("new/cat.jpg")], taken=named)
    assert grown[P("dog.jpg")] == named[P("dog.jpg")] == "dog.jpg"
    assert grown[P("dog.png")] != "dog.png"  # its stem is taken by the earlier dog.jpg
    # a run interrupted after naming some images resumes with exactly the names an uninterrupted run gives
    full = [P("a.jpg"), P("a.png"), P("b.jpg")]
    uninterrupted = output_names(full)
    resumed = output_names(full, taken={P("a.jpg"): uninterrupted[P("a.jpg")]})
    assert resumed == uninterrupted


def test_a_new_image_never_takes_the_label_file_of_an_image_that_left_the_folder():
    # dog.jpg was labeled earlier and has since left the folder; its record (and label dog.txt) remain.
    taken = {P("dog.jpg"): "dog.jpg"}
    names = output_names([P("dog.png")], taken)
    assert P(names[P("dog.png")]).stem.casefold() != "dog"


def test_split_is_deterministic_seeded_and_close_to_the_ratios():
    sources = [P(f"img_{index}.jpg") for index in range(4000)]
    splits = [assign_split(source, (0.7, 0.2, 0.1), seed=3) for source in sources]
    assert splits == [assign_split(source, (0.7, 0.2, 0.1), seed=3) for source in sources]
    counts = Counter(splits)
    assert abs(counts["train"] / 4000 - 0.7) < 0.03 and abs(counts["test"] / 4000 - 0.1) < 0.02
    other_seed = [assign_split(source, (0.7, 0.2, 0.1), seed=4) for source in sources]
    assert splits != other_seed
    assert set(assign_split(source, (1.0, 0.0)) for source in sources) == {"train"}


@pytest.mark.parametrize("ratios", [(0.8,), (0.5, 0.6), (-0.2, 1.2), (0.0, 1.0), ("a", "b"), (0.5, 0.2, 0.2, 0.1)])
def test_bad_split_ratios_raise(ratios):
    with pytest.raises(ValueError, match="split"):
        check_split_ratios(ratios)
