
import pytest

from cifake.data import SourceError, cifar_class, find_members
from cifake.data.sources import classify
from conftest import tree_files, write_tree, write_zip


@pytest.mark.parametrize(
    ("name", "expected"),
    [("0.jpg", 0), ("4999.jpg", 0), ("12 (2).jpg", 1), ("0 (10).jpg", 9), ("train/FAKE/1000 (7).jpg", 6),
     ("0 (11).jpg", -1), ("0 (1).jpg", 0), ("cat.jpg", -1), ("12(2).jpg", -1)],
)
def test_cifar_class_from_file_name(name, expected):
    assert cifar_class(name) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("train/REAL/0.jpg", ("train", 1, "REAL")), ("TEST/fake/1 (2).jpg", ("test", 0, "FAKE")),
     ("Real/x.png", ("all", 1, "REAL")), ("cifake/train/FAKE/3.jpg", ("train", 0, "FAKE")),
     ("mine/REAL/cats/1.jpg", ("all", 1, "cats")),  # a folder under the label folder names the source
     ("train/FAKE/stylegan2/a/1.jpg", ("train", 0, "stylegan2")),  # the one right under it, however deep
     ("val/REAL/1.jpg", ("all", 1, "REAL")), ("train/other/1.jpg", None), ("README.md", None),
     ("__MACOSX/train/REAL/._0.jpg", None), ("train/REAL/.DS_Store", None),
     ("FAKE", None), ("notes/real", None),  # a file named like a label is not a label folder
     ("REAL/test", ("all", 1, "REAL"))],  # nor is a file named like a split a split folder
)
def test_classify_layout_paths(path, expected):
    assert classify(path) == expected


def _summary(members):
    return sorted({(m.split, m.label) for m in members}), len(members)


def test_every_layout_yields_the_same_members(tmp_path):
    files = tree_files({"train": 3, "test": 2})
    expected = ([("test", 0), ("test", 1), ("train", 0), ("train", 1)], 10)
    tree = write_tree(tmp_path / "tree", files)
    assert _summary(find_members(tree)) == expected
    assert _summary(find_members(write_zip(tmp_path / "one.zip", files))) == expected
    prefixed = write_zip(tmp_path / "prefixed.zip", {f"CIFAKE/{k}": v for k, v in files.items()})
    assert _summary(find_members(prefixed)) == expected
    splits = tmp_path / "splits"
    for split in ("train", "test"):
        write_zip(splits / f"{split}.zip", {k: v for k, v in files.items() if k.startswith(split)})
    (splits / "SOURCES.md").write_text("not data")
    assert _summary(find_members(splits)) == expected


def test_user_folder_with_real_and_fake_is_one_split(tmp_path):
    files = tree_files({"x": 2}, split_dirs=False)
    members = find_members(write_tree(tmp_path / "mine", files))
    assert _summary(members) == ([("all", 0), ("all", 1)], 4)


def test_case_insensitive_folders(tmp_path):
    files = {k.replace("train/REAL", "Train/real").replace("train/FAKE", "TRAIN/Fake"): v
             for k, v in tree_files({"train": 2}).items()}
    assert _summary(find_members(write_tree(tmp_path / "t", files))) == ([("train", 0), ("train", 1)], 4)


def test_unreadable_sources_raise_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        find_members(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError) as empty:
        find_members(tmp_path / "empty")
    assert str(empty.value) == (f"{tmp_path / 'empty'}: found no images under REAL/ or FAKE/ folders (expected "
                                "train/REAL, train/FAKE, test/REAL, test/FAKE, or REAL/ and FAKE/)")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SourceError, match="not a zip file"):
        find_members(text)


def test_zips_in_a_folder_are_read_in_order_and_a_broken_one_is_named(tmp_path):
    files = tree_files({"train": 2})
    write_zip(tmp_path / "b.ZIP", {k: v for k, v in files.items() if "REAL" in k})  # suffix in any case
    write_zip(tmp_path / "a.zip", {**{k: v for k, v in files.items() if "FAKE" in k}, "train/FAKE/._0.jpg": b"x",
                                   "__MACOSX/train/FAKE/0.jpg": b"x"})
    members = find_members(tmp_path)
    assert [m.container.rsplit("/", 1)[-1] for m in members] == ["a.zip"] * 2 + ["b.ZIP"] * 2
    assert [m.name for m in members] == sorted(m.name for m in members if "FAKE" in m.name) + sorted(
        m.name for m in members if "REAL" in m.name)
    assert all(m.zip_entry and m.zip_entry[1] > 0 for m in members)
    (tmp_path / "c.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError, match="c.zip: unreadable zip"):
        find_members(tmp_path)


def test_a_folder_tree_is_listed_with_relative_names_and_no_container(tmp_path):
    root = write_tree(tmp_path / "t", tree_files({"test": 1}))
    (root / "test" / "REAL" / ".DS_Store").write_bytes(b"x")
    members = find_members(root)
    assert [(m.name, m.split, m.label, m.container) for m in members] == [
        ("test/FAKE/0.jpg", "test", 0, ""), ("test/REAL/0.jpg", "test", 1, "")]


@pytest.mark.parametrize(("path", "expected"), [
    ("train/REAL/FAKE/1.jpg", ("all", 0, "FAKE")),  # the nearest label folder names the label; its parent no split
    ("train/FAKE/real/2.jpg", ("all", 1, "REAL")),
    ("REAL/test/FAKE/3.jpg", ("test", 0, "FAKE")),  # a split right above the nearest label folder counts
    ("test/FAKE/sd14/REAL-looking/4.jpg", ("test", 0, "sd14")),  # a folder only named like a label is no label folder
    ("fake/train/real/5.jpg", ("train", 1, "REAL")),
])
def test_when_label_folders_nest_the_nearest_one_gives_the_label_and_the_one_above_it_the_split(path, expected):
    assert classify(path) == expected


def test_nested_label_folders_read_the_same_from_a_tree_and_a_zip(tmp_path):
    """A hand-made layout: an archive of last year's FAKE images kept inside train/REAL, and REAL photographs
    kept inside a FAKE folder: each image takes the label of the folder nearest to it."""
    image = tree_files({"train": 1})["train/REAL/0.jpg"]
    files = {"train/REAL/0.jpg": image, "train/REAL/FAKE/old/1.jpg": image, "train/FAKE/2.jpg": image,
             "train/FAKE/REAL/3.jpg": image, "test/REAL/4.jpg": image}
    expected = {"train/REAL/0.jpg": ("train", 1), "train/REAL/FAKE/old/1.jpg": ("all", 0),
                "train/FAKE/2.jpg": ("train", 0), "train/FAKE/REAL/3.jpg": ("all", 1), "test/REAL/4.jpg": ("test", 1)}
    for source in (write_tree(tmp_path / "tree", files), write_zip(tmp_path / "tree.zip", files)):
        assert {m.name: (m.split, m.label) for m in find_members(source)} == expected


def test_the_folder_under_a_label_names_the_source_in_a_tree_and_a_zip(tmp_path):
    """Faces' layout: FAKE/<generator>/...; a file right under its label folder takes the label's name."""
    image = tree_files({"train": 1})["train/REAL/0.jpg"]
    files = {"REAL/0.jpg": image, "FAKE/PGGAN/1.jpg": image, "FAKE/StyleGAN2/sub/2.jpg": image, "FAKE/3.jpg": image}
    expected = {"REAL/0.jpg": "REAL", "FAKE/PGGAN/1.jpg": "PGGAN", "FAKE/StyleGAN2/sub/2.jpg": "StyleGAN2",
                "FAKE/3.jpg": "FAKE"}
    for source in (write_tree(tmp_path / "tree", files), write_zip(tmp_path / "faces.zip", files)):
        assert {m.name: m.source for m in find_members(source)} == expected


def test_a_member_named_without_a_source_takes_its_labels_name():
    from cifake.data.sources import Member

    assert [Member("a.jpg", "train", label, "").source for label in (1, 0)] == ["REAL", "FAKE"]
    assert Member("b.jpg", "all", 0, "", None, "PGGAN").source == "PGGAN"


def test_the_fingerprint_tells_apart_identical_files_in_other_places(tmp_path):
    """Path, size and time make the key: the same files with the same times, in another folder or under another
    zip name, key another cache."""
    import os
    import shutil

    from cifake.data.sources import fingerprint

    files = tree_files({"train": 2})
    first = write_tree(tmp_path / "a", files)
    second = shutil.copytree(first, tmp_path / "b", copy_function=shutil.copy2)  # copy2 keeps the times
    assert fingerprint(first) == fingerprint(first) and fingerprint(first) != fingerprint(second)
    zips = tmp_path / "zips"
    write_zip(zips / "one.zip", files)
    before = fingerprint(zips)
    stat = (zips / "one.zip").stat()
    (zips / "one.zip").rename(zips / "two.zip")
    os.utime(zips / "two.zip", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(zips) != before
