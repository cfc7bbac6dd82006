"""Codec framing: round trips, the codec byte, cross-codec reads, corruption, extras."""

from __future__ import annotations

import importlib.util
import random
import sys
import threading
import zlib
from collections.abc import Callable

import pytest

from livingai import (
    CheckpointCorruptError,
    CheckpointEngine,
    Codec,
    ExecutionNode,
    InvalidNodeError,
    MemoryStore,
    MissingExtraError,
    NodeType,
)
from livingai._core import codec as _codec
from livingai._core.codec import decode, default_codec, encode

HAS_ZSTD = importlib.util.find_spec("zstandard") is not None
needs_zstd = pytest.mark.skipif(not HAS_ZSTD, reason="the zstd extra is not installed")

NODE_ID = "node-3f9c2a"
MiB = 1024 * 1024

ALL_CODECS = [
    pytest.param(Codec.NONE, id="NONE"),
    pytest.param(Codec.ZLIB, id="ZLIB"),
    pytest.param(Codec.ZSTD, id="ZSTD", marks=needs_zstd),
]


def _random_bytes(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


STATES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"x", id="one-byte"),
    pytest.param(b"hello agent state " * 40, id="text"),
    pytest.param(bytes(range(256)) * 4, id="all-byte-values"),
    pytest.param(_random_bytes(MiB), id="1MiB-random"),
    pytest.param(b"\x00" * MiB, id="1MiB-zeros"),
    pytest.param(b"step=42;" * (MiB // 8), id="1MiB-repetitive"),
]

# Non-empty states used for corruption tests (an empty zstd frame is a known gap, see below).
CORRUPTIBLE_STATES = [
    pytest.param(b"a", id="one-byte"),
    pytest.param(b"checkpointed agent memory " * 20, id="text"),
    pytest.param(_random_bytes(3000, seed=11), id="random-3000"),
]


@pytest.fixture
def block_zstandard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import zstandard` fail as if the extra were not installed."""
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setattr(_codec, "_per_thread", threading.local())  # no cached compressor


# -- round trips and framing ------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("state", STATES)
def test_round_trip(codec: Codec, state: bytes) -> None:
    blob = encode(state, codec)
    assert isinstance(blob, bytes)
    decoded = decode(blob, NODE_ID)
    assert type(decoded) is bytes
    assert decoded == state


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_encode_accepts_bytes_like_states(
    codec: Codec, wrap: Callable[[bytes], bytearray | memoryview]
) -> None:
    state = b"bytes-like state " * 10
    assert decode(encode(wrap(state), codec), NODE_ID) == state


def test_codec_byte_values_are_pinned() -> None:
    assert [(c.name, int(c)) for c in Codec] == [("NONE", 0x00), ("ZLIB", 0x01), ("ZSTD", 0x02)]


@pytest.mark.parametrize(("codec", "byte"), [(Codec.NONE, 0x00), (Codec.ZLIB, 0x01)])
@pytest.mark.parametrize("state", [b"", b"some state " * 30])
def test_codec_byte_is_first_byte(codec: Codec, byte: int, state: bytes) -> None:
    assert encode(state, codec)[0] == byte


@needs_zstd
@pytest.mark.parametrize("state", [b"", b"some state " * 30])
def test_zstd_codec_byte_is_first_byte(state: bytes) -> None:
    blob = encode(state, Codec.ZSTD)
    assert blob[0] == 0x02
    assert blob[1:5] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic follows the codec byte


@pytest.mark.parametrize("state", [b"", b"abc", b"agent state " * 1000, _random_bytes(70_000)])
def test_zlib_payload_is_a_level_6_zlib_stream(state: bytes) -> None:
    blob = encode(state, Codec.ZLIB)
    assert zlib.decompress(blob[1:]) == state
    assert blob[1:] == zlib.compress(state, 6)


@pytest.mark.parametrize("state", [b"", b"abc", _random_bytes(5000)])
def test_none_payload_is_crc32_then_state(state: bytes) -> None:
    blob = encode(state, Codec.NONE)
    assert blob[1:5] == zlib.crc32(state).to_bytes(4, "big")
    assert blob[5:] == state


def test_compressing_codecs_shrink_repetitive_states() -> None:
    state = b"the same line again\n" * 5000
    assert len(encode(state, Codec.ZLIB)) < len(state) // 20
    if HAS_ZSTD:
        assert len(encode(state, Codec.ZSTD)) < len(state) // 20


# -- every blob stays readable whatever the engine's codec is now --------------------------


@pytest.mark.parametrize("read_codec", ALL_CODECS)
@pytest.mark.parametrize("write_codec", ALL_CODECS)
@pytest.mark.parametrize(
    "state", [b"small state " * 10, _random_bytes(200_000, seed=3)], ids=["small", "offloaded"]
)
async def test_blob_readable_by_engine_with_another_codec(
    write_codec: Codec, read_codec: Codec, state: bytes
) -> None:
    store = MemoryStore()
    writer = CheckpointEngine(store, codec=write_codec)
    reader = CheckpointEngine(store, codec=read_codec)
    node = ExecutionNode(execution_id="exec-1", type=NodeType.PROMPT)
    try:
        await writer.save(node, state)
        await writer.flush()
        record = await store.read(node.id)
        assert record is not None
        assert record.checkpoint is not None
        assert record.checkpoint[0] == write_codec  # stored as written, not re-encoded

        loaded = await reader.load(node.id)  # a fresh engine: nothing cached, read the store
        assert loaded is not None
        assert loaded.state == state
        assert loaded.node.id == node.id
    finally:
        await reader.close()
        await writer.close()


@pytest.mark.parametrize("codec", [Codec.NONE, Codec.ZLIB])
async def test_blob_readable_by_default_codec_engine_without_zstandard(
    codec: Codec, block_zstandard: None
) -> None:
    store = MemoryStore()
    writer = CheckpointEngine(store, codec=codec)
    node = ExecutionNode(execution_id="exec-1", type=NodeType.MEMORY)
    state = b"remembered " * 50
    try:
        await writer.save(node, state)
        await writer.flush()
        reader = CheckpointEngine(store)
        assert reader.codec is Codec.ZLIB
        loaded = await reader.load(node.id)
        assert loaded is not None
        assert loaded.state == state
        await reader.close()
    finally:
        await writer.close()


# -- corruption -----------------------------------------------------------------------------


def _assert_corrupt(blob: bytes) -> CheckpointCorruptError:
    with pytest.raises(CheckpointCorruptError) as info:
        decode(blob, NODE_ID)
    assert NODE_ID in str(info.value)
    return info.value


def test_empty_blob_is_corrupt() -> None:
    error = _assert_corrupt(b"")
    assert "empty" in str(error)


@pytest.mark.parametrize("tag", [0x03, 0x04, 0x7F, 0x80, 0xFF])
def test_unknown_codec_byte_is_corrupt(tag: int) -> None:
    error = _assert_corrupt(bytes([tag]) + zlib.compress(b"state"))
    assert f"0x{tag:02x}" in str(error)


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("state", CORRUPTIBLE_STATES)
def test_truncated_blob_is_corrupt(codec: Codec, state: bytes) -> None:
    blob = encode(state, codec)
    cuts = {0, 1, 2, 3, 4, 5, 6, len(blob) // 3, len(blob) // 2, len(blob) - 2, len(blob) - 1}
    for cut in sorted(c for c in cuts if 0 <= c < len(blob)):
        _assert_corrupt(blob[:cut])


@pytest.mark.parametrize("codec", [Codec.NONE, Codec.ZLIB])
def test_truncated_empty_state_blob_is_corrupt(codec: Codec) -> None:
    blob = encode(b"", codec)
    for cut in range(len(blob)):
        _assert_corrupt(blob[:cut])


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("state", CORRUPTIBLE_STATES)
def test_flipped_payload_byte_is_corrupt(codec: Codec, state: bytes) -> None:
    blob = encode(state, codec)
    positions = range(1, len(blob)) if len(blob) <= 400 else [*range(1, 80), *range(-80, 0)]
    for position in positions:
        damaged = bytearray(blob)
        damaged[position] ^= 0xFF
        _assert_corrupt(bytes(damaged))


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_flipped_byte_in_1mib_blob_is_corrupt(codec: Codec) -> None:
    blob = encode(_random_bytes(MiB, seed=5), codec)
    for position in (1, 5, 17, len(blob) // 2, len(blob) - 5, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[position] ^= 0xFF
        _assert_corrupt(bytes(damaged))


@pytest.mark.parametrize(
    "codec",
    [
        pytest.param(Codec.NONE, id="NONE"),
        pytest.param(Codec.ZLIB, id="ZLIB"),
        pytest.param(Codec.ZSTD, id="ZSTD", marks=[needs_zstd]),
    ],
)
def test_trailing_bytes_are_corrupt(codec: Codec) -> None:
    blob = encode(b"agent state " * 20, codec)
    _assert_corrupt(blob + b"\x00")


@needs_zstd
def test_truncated_empty_state_zstd_blob_is_corrupt() -> None:
    blob = encode(b"", Codec.ZSTD)
    for cut in range(len(blob)):
        _assert_corrupt(blob[:cut])


# -- encode input validation ----------------------------------------------------------------


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("state", ["a str", None, 42, [1, 2], {"k": b"v"}])
def test_encode_rejects_non_bytes_state(codec: Codec, state: object) -> None:
    with pytest.raises(InvalidNodeError, match=type(state).__name__):
        encode(state, codec)  # type: ignore[arg-type]


# -- default codec and the zstd extra -----------------------------------------------------------


@needs_zstd
def test_default_codec_is_zstd_when_zstandard_importable() -> None:
    assert default_codec() is Codec.ZSTD
    assert CheckpointEngine(MemoryStore()).codec is Codec.ZSTD


def test_default_codec_is_zlib_when_zstandard_blocked(block_zstandard: None) -> None:
    assert default_codec() is Codec.ZLIB
    assert CheckpointEngine(MemoryStore()).codec is Codec.ZLIB


@needs_zstd
def test_zstd_blob_read_without_zstandard_raises_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = encode(b"compressed while zstandard was installed", Codec.ZSTD)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingExtraError, match=r"livingai\[zstd\]"):
        decode(blob, NODE_ID)


def test_zstd_encode_without_zstandard_raises_missing_extra(block_zstandard: None) -> None:
    with pytest.raises(MissingExtraError, match=r'pip install "livingai\[zstd\]"'):
        encode(b"state", Codec.ZSTD)
    with pytest.raises(MissingExtraError, match=r'pip install "livingai\[zstd\]"'):
        CheckpointEngine(MemoryStore(), codec=Codec.ZSTD)
