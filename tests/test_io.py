"""zoo.io: atomic writes keep old files whole and give new ones ordinary permissions."""

import os

import pytest

from zoo.io import atomic_path, atomic_write


def test_atomic_write_replaces_whole_files_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "models.config"
    atomic_write(target, "first")
    atomic_write(target, b"second")
    assert target.read_text() == "second"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "second"
    assert sorted(os.listdir(target.parent)) == ["models.config"]
