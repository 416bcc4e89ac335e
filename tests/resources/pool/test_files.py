"""``FileHandles``: files below one directory, tracked, limited, closed at dispose."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, assert_type

import pydantic
import pytest

from tests.resources.pool.items import eventually
from tether import Container, HealthStatus
from tether.exceptions import ClosedError, PoolTimeout, ResourceError, ResourceTimeout
from tether.resources.pool import FileHandle, FileHandles, FilesConfig, FilesStats
from tether.testing import assert_no_leaks

pytestmark = pytest.mark.anyio

MakeFiles = Callable[..., Awaitable[FileHandles]]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    return tmp_path / "base"


@pytest.fixture
async def make_files(base: Path) -> AsyncIterator[MakeFiles]:
    """``await make_files(max_open=...)``: initialized FileHandles on ``base``, disposed
    at teardown."""
    made: list[FileHandles] = []

    async def make(**options: Any) -> FileHandles:
        options.setdefault("base_dir", base)
        files = FileHandles(FilesConfig(name="uploads", **options))
        await files.initialize()
        made.append(files)
        return files

    yield make
    for files in made:
        await files.dispose()


# -- reading and writing ---------------------------------------------------------------


async def test_write_then_read_back(make_files: MakeFiles, base: Path) -> None:
    files = await make_files()

    async with files.open("notes.txt", "w") as out:
        assert await out.write("hello\nworld\n") == 12
    async with files.open("notes.txt") as back:
        assert await back.readline() == "hello\n"
        assert await back.read() == "world\n"

    assert (base / "notes.txt").read_text() == "hello\nworld\n"


async def test_binary_mode_reads_bytes(make_files: MakeFiles, base: Path) -> None:
    (base / "blob.bin").write_bytes(b"\x00\x01\x02")
    files = await make_files()

    async with files.open("blob.bin", "rb") as blob:
        assert_type(blob, FileHandle[bytes])
        await blob.seek(1)
        assert await blob.read() == b"\x01\x02"
        assert await blob.tell() == 3


async def test_text_mode_handle_is_typed_str(make_files: MakeFiles) -> None:
    files = await make_files()

    async with files.open("typed.txt", "w+") as handle:
        assert_type(handle, FileHandle[str])
        await handle.write("abc")
        await handle.flush()
        await handle.truncate(2)
        await handle.seek(0)
        assert await handle.read() == "ab"


async def test_awaited_open_returns_a_tracked_handle(make_files: MakeFiles) -> None:
    files = await make_files()

    handle = await files.open("log.txt", "a")
    assert files.statistics().open == 1
    await handle.close()

    assert handle.closed
    stats = files.statistics()
    assert (stats.open, stats.opened_total, stats.closed_total) == (0, 1, 1)


async def test_closing_a_handle_twice_is_harmless(make_files: MakeFiles) -> None:
    files = await make_files()
    handle = await files.open("twice.txt", "w")

    await handle.close()
    await handle.close()

    assert files.statistics().closed_total == 1


async def test_closed_handle_refuses_io(make_files: MakeFiles) -> None:
    files = await make_files()
    handle = await files.open("done.txt", "w")
    await handle.close()

    with pytest.raises(ClosedError, match=r"done\.txt"):
        await handle.write("late")


async def test_file_io_runs_off_the_event_loop(make_files: MakeFiles, base: Path) -> None:
    # Opening a FIFO blocks until the other end opens: done on the loop, this deadlocks.
    os.mkfifo(base / "pipe")
    files = await make_files()

    async def reader() -> str:
        async with files.open("pipe") as pipe:
            return await pipe.read()

    async def writer() -> None:
        async with files.open("pipe", "w") as pipe:
            await pipe.write("through the pipe")

    got, _ = await asyncio.wait_for(asyncio.gather(reader(), writer()), timeout=30)

    assert got == "through the pipe"


async def test_missing_file_raises_file_not_found_and_frees_the_slot(
    make_files: MakeFiles,
) -> None:
    files = await make_files(max_open=1)

    with pytest.raises(FileNotFoundError):
        await files.open("nope.txt")
    async with files.open("yes.txt", "w"):
        pass

    assert files.statistics().failures_by_kind == {"FileNotFoundError": 1}


async def test_absolute_path_inside_the_base_directory_is_allowed(
    make_files: MakeFiles, base: Path
) -> None:
    files = await make_files()

    async with files.open(str(files.base_dir / "abs.txt"), "w") as handle:
        await handle.write("x")

    assert handle.path == "abs.txt"
    assert (base / "abs.txt").read_text() == "x"


async def test_symlink_that_stays_inside_is_followed(make_files: MakeFiles, base: Path) -> None:
    (base / "real").mkdir()
    (base / "real" / "data.txt").write_text("inside")
    (base / "alias").symlink_to(base / "real")
    files = await make_files()

    async with files.open("alias/data.txt") as handle:
        assert await handle.read() == "inside"


# -- paths that leave the base directory -----------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["../outside.txt", "sub/../../outside.txt", "..", ".", "", "a\x00b"],
)
async def test_path_leaving_the_base_directory_is_refused(make_files: MakeFiles,
                                                          path: str) -> None:
    files = await make_files()

    with pytest.raises(PermissionError, match="uploads"):
        await files.open(path)

    stats = files.statistics()
    assert (stats.refused_total, stats.open, stats.opened_total) == (1, 0, 0)


async def test_absolute_path_outside_is_refused(make_files: MakeFiles, base: Path) -> None:
    files = await make_files()

    with pytest.raises(PermissionError, match="outside the base directory"):
        await files.open(str(base.parent / "outside.txt"))


async def test_symlink_to_a_file_outside_is_refused(make_files: MakeFiles, base: Path) -> None:
    (base / "leak.txt").symlink_to(base.parent / "outside.txt")
    files = await make_files()

    with pytest.raises(PermissionError, match="symbolic link"):
        await files.open("leak.txt")

    assert files.statistics().refused_total == 1
    assert files.statistics().open == 0


async def test_symlinked_directory_leading_outside_is_refused(make_files: MakeFiles,
                                                              base: Path) -> None:
    (base / "escape").symlink_to(base.parent)
    files = await make_files()

    with pytest.raises(PermissionError, match="symbolic link"):
        await files.open("escape/outside.txt", "a")

    assert (base.parent / "outside.txt").read_text() == "secret"


async def test_write_through_a_symlink_outside_is_refused(make_files: MakeFiles,
                                                          base: Path) -> None:
    (base / "planted").symlink_to(base.parent / "new.txt")
    files = await make_files()

    with pytest.raises(PermissionError):
        await files.open("planted", "w")

    assert not (base.parent / "new.txt").exists()


# -- the max_open limit ----------------------------------------------------------------


async def test_open_past_max_open_raises_pool_timeout(make_files: MakeFiles) -> None:
    files = await make_files(max_open=2, pool_timeout=0.1)
    first, second = await files.open("a", "w"), await files.open("b", "w")

    with pytest.raises(PoolTimeout) as caught:
        await files.open("c", "w")

    assert (caught.value.resource, caught.value.size) == ("uploads", 2)
    assert files.statistics().pool_timeouts_total == 1
    await first.close()
    await second.close()


async def test_closing_a_file_lets_a_waiting_open_through(make_files: MakeFiles) -> None:
    files = await make_files(max_open=1)
    first = await files.open("a", "w")
    waiting = asyncio.create_task(files.open("b", "w").__aenter__())
    await eventually(lambda: files.statistics().waiting == 1)

    await first.close()
    second = await waiting

    assert files.statistics().open == 1
    await second.close()


async def test_cancelled_open_while_waiting_leaks_no_slot(make_files: MakeFiles) -> None:
    files = await make_files(max_open=1)
    first = await files.open("a", "w")

    async def open_b() -> None:
        async with files.open("b", "w"):
            pass

    waiting = asyncio.create_task(open_b())
    await eventually(lambda: files.statistics().waiting == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await first.close()

    async with files.open("c", "w"):
        assert files.statistics().open == 1
    assert files.statistics().waiting == 0


# -- lifecycle -------------------------------------------------------------------------


async def test_dispose_closes_every_open_file(make_files: MakeFiles) -> None:
    files = await make_files()
    handles = [await files.open(f"f{i}.txt", "w") for i in range(5)]

    await files.dispose()

    assert all(h.closed for h in handles)
    stats = files.statistics()
    assert isinstance(stats, FilesStats)
    assert (stats.open, stats.closed_total) == (0, 5)


async def test_open_after_dispose_raises_closed_error(make_files: MakeFiles) -> None:
    files = await make_files()
    await files.dispose()

    with pytest.raises(ClosedError, match="FileHandles 'uploads'"):
        await files.open("late.txt", "w")


async def test_waiting_open_gets_closed_error_at_dispose(make_files: MakeFiles) -> None:
    files = await make_files(max_open=1)
    await files.open("a", "w")
    waiting = asyncio.create_task(files.open("b", "w").__aenter__())
    await eventually(lambda: files.statistics().waiting == 1)

    await files.dispose()

    with pytest.raises(ClosedError):
        await waiting


async def test_open_before_initialize_is_refused(base: Path) -> None:
    files = FileHandles(FilesConfig(base_dir=base))

    with pytest.raises(ResourceError, match="not initialized"):
        await files.open("a.txt")


async def test_missing_base_dir_fails_initialize_naming_it(tmp_path: Path) -> None:
    files = FileHandles(FilesConfig(name="uploads", base_dir=tmp_path / "absent"))

    with pytest.raises(ResourceError, match=r"base_dir .*absent"):
        await files.initialize()


async def test_create_makes_the_base_dir(tmp_path: Path) -> None:
    files = FileHandles(FilesConfig(base_dir=tmp_path / "new" / "dir", create=True))

    await files.initialize()

    assert (tmp_path / "new" / "dir").is_dir()
    await files.dispose()


async def test_health_check_fails_once_the_base_dir_is_gone(make_files: MakeFiles,
                                                            base: Path) -> None:
    files = await make_files()
    assert await files.health_check() is True

    await asyncio.to_thread(base.rmdir)

    with pytest.raises(ResourceError, match="base directory not usable"):
        await files.health_check()


async def test_container_disposes_files_left_open(base: Path) -> None:
    container = Container()
    container.bind(FilesConfig, FilesConfig(name="uploads", base_dir=base))
    container.bind(FileHandles)

    async with container:
        files = await container.aget(FileHandles)
        handle = await files.open("left-open.txt", "w")
        await handle.write("unflushed")
        assert (await container.health()).status is HealthStatus.HEALTHY

    assert handle.closed
    assert (base / "left-open.txt").read_text() == "unflushed"
    assert_no_leaks(container)


def test_config_needs_a_base_dir() -> None:
    with pytest.raises(pydantic.ValidationError, match="base_dir"):
        FilesConfig()  # type: ignore[call-arg]


def test_config_refuses_a_zero_max_open(base: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="max_open"):
        FilesConfig(base_dir=base, max_open=0)


async def test_read_past_the_timeout_raises_resource_timeout(make_files: MakeFiles,
                                                             base: Path) -> None:
    os.mkfifo(base / "slow")
    files = await make_files(timeout=0.2)
    reader, writer = await asyncio.gather(files.open("slow"), files.open("slow", "w"))

    with pytest.raises(ResourceTimeout) as caught:
        await reader.read(5)  # nothing written yet: the worker thread blocks

    assert caught.value.resource == "uploads"
    await writer.write("hello")
    await writer.close()  # the blocked read ends, and with it the reader's lock
    await reader.close()
    assert files.statistics().open == 0


async def test_breaker_ignores_the_callers_mistakes(make_files: MakeFiles, base: Path) -> None:
    (base / "there.txt").write_text("yes")
    (base / "folder").mkdir()
    files = await make_files(circuit_breaker_threshold=1)

    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            await files.open("missing.txt")
        with pytest.raises(IsADirectoryError):
            await files.open("folder", "w")

    async with files.open("there.txt") as handle:
        assert await handle.read() == "yes"
