"""Upload storage bounds (issue 18, item 10): count and bytes are capped, and files an earlier run
left behind count against the caps, oldest removed first."""
import io
import os

import pytest

from tensorsharp.server.errors import ApiError
from tensorsharp.server.uploads import Uploads


def save(u: Uploads, n: int):
    return u.save(io.BytesIO(b"x" * n), "a.txt", "text/plain")


def test_count_and_bytes_are_capped_oldest_first(tmp_path):
    u = Uploads(tmp_path, max_bytes=100, max_files=3, max_total=200)
    a, b, c = save(u, 100), save(u, 100), save(u, 40)
    assert not a.path.exists() and u.get(a.id) is None        # 140 bytes kept: 240 is over 200
    d = save(u, 10)
    assert [x.path.exists() for x in (b, c, d)] == [True, True, True]
    e = save(u, 10)
    assert not b.path.exists() and u.get(b.id) is None        # four files: the oldest goes
    assert sorted(os.listdir(tmp_path)) == sorted([c.id, d.id, e.id])
    with pytest.raises(ApiError):
        save(u, 101)
    assert sorted(os.listdir(tmp_path)) == sorted([c.id, d.id, e.id])


def test_files_from_earlier_runs_count_against_the_caps(tmp_path):
    first = Uploads(tmp_path, max_bytes=100, max_files=4)
    old = [save(first, 10) for _ in range(4)]
    for i, up in enumerate(old):   # distinct ages, oldest first
        os.utime(up.path, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "notes.txt").write_text("not ours")   # only generated names are managed
    second = Uploads(tmp_path, max_bytes=100, max_files=4)
    new = save(second, 10)
    assert not old[0].path.exists() and all(up.path.exists() for up in old[1:])
    assert new.path.exists() and (tmp_path / "notes.txt").exists()
    assert len([p for p in os.listdir(tmp_path) if p != "notes.txt"]) == 4
    Uploads(tmp_path, max_bytes=100, max_files=2)   # a smaller cap trims at start
    assert len([p for p in os.listdir(tmp_path) if p != "notes.txt"]) == 2 and new.path.exists()
