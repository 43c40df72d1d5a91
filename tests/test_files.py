import os

import pytest

from ovapipe.files import atomic_writer, write_json


def test_atomic_writer_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out" / "image.ova"
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_writer_replaces_only_when_complete(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_writer(target, "w") as handle:
        handle.write("new")
        raise KeyboardInterrupt
    assert target.read_text() == "old"
    write_json(target, {"b": 1, "a": 2})
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_read_input_text_names_the_input_and_the_problem(tmp_path):
    from ovapipe.errors import ConfigError
    from ovapipe.files import read_input_text

    with pytest.raises(ConfigError, match=r"^--in x.yaml: no such file$"):
        read_input_text(tmp_path / "x.yaml", "--in x.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        read_input_text(tmp_path)
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_input_text(binary, "site.json")
    good = tmp_path / "g.json"
    good.write_text("{}", encoding="utf-8")
    assert read_input_text(good) == "{}"


@pytest.mark.parametrize("where", ["folder", "under-a-file"])
def test_an_impossible_output_path_is_a_usage_error_naming_it(tmp_path, where):
    from ovapipe.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = tmp_path if where == "folder" else blocker / "out.json"
    with pytest.raises(ConfigError, match=f"cannot write {target}"):
        write_json(target, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_sha256_file_matches_hashlib_and_reports_progress(tmp_path):
    import hashlib
    import io

    from ovapipe.files import sha256_file
    from ovapipe.progress import Progress

    data = os.urandom((1 << 20) * 2 + 17)
    path = tmp_path / "disk.vmdk"
    path.write_bytes(data)
    progress = Progress("sha256", len(data), io.StringIO(), tty=False)
    assert sha256_file(path, progress) == hashlib.sha256(data).hexdigest()
    assert progress.done == len(data)
