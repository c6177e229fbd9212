"""Frames and pickling between the coordinator and its workers."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from procoord import Coordinator, SerializationError
from procoord._wire import FROM_WORKER_KINDS, HEADER, FrameReader, Kind, dumps, frame, loads

from . import _funcs


def test_frames_split_anywhere() -> None:
    """Test that frames are rebuilt whatever the chunking of the byte stream."""
    stream = frame(Kind.TASK, 1, 0.0, b"abc") + frame(Kind.RESULT, 2, 1.5, b"") + frame(Kind.LOAD, 3, 9.0, b"x" * 1000)
    for size in (1, 2, 7, 64, len(stream)):
        reader = FrameReader()
        got = []
        for i in range(0, len(stream), size):
            got.extend(reader.feed(stream[i : i + size]))
        assert got == [(Kind.TASK, 1, 0.0, b"abc"), (Kind.RESULT, 2, 1.5, b""), (Kind.LOAD, 3, 9.0, b"x" * 1000)]
        assert reader.pending_bytes == 0


def test_truncated_frame_waits() -> None:
    """Test that a partial frame is kept until the rest arrives."""
    data = frame(Kind.TASK, 5, 0.0, b"payload")
    reader = FrameReader()
    assert reader.feed(data[:-1]) == []
    assert reader.pending_bytes == len(data) - 1
    assert reader.feed(data[-1:]) == [(Kind.TASK, 5, 0.0, b"payload")]


def test_dumps_prefers_pickle_and_falls_back_to_cloudpickle() -> None:
    """Test that plain data uses pickle and lambdas go through cloudpickle."""
    assert loads(dumps({"a": [1, 2]}, "task"), "task") == {"a": [1, 2]}
    fn = loads(dumps(lambda x: x + 1, "task"), "task")
    assert fn(1) == 2


def test_unpicklable_raises_serialization_error() -> None:
    """Test that an unpicklable object raises SerializationError naming the stage."""
    with pytest.raises(SerializationError) as info:
        dumps(threading.Lock(), "task")
    assert info.value.stage == "task" and "lock" in str(info.value)
    with pytest.raises(SerializationError):
        loads(b"not a pickle", "result")


def test_big_frame_is_received_into_its_own_buffer() -> None:
    """Test that a frame much larger than one read arrives whole, between small ones."""
    big = bytes(range(256)) * 4096  # 1 MiB
    stream = frame(Kind.TASK, 1, 0.0, b"a") + frame(Kind.RESULT, 2, 0.5, big) + frame(Kind.LOAD, 3, 1.0, b"z")
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    reader = FrameReader()
    got = []
    sent = 0
    try:
        while True:
            if sent < len(stream):
                try:
                    sent += os.write(w, stream[sent : sent + 300_000])
                except BlockingIOError:
                    pass
            elif w != -1:
                os.close(w)
                w = -1
            try:
                frames = reader.read_from(r)
            except BlockingIOError:
                continue
            if frames is None:
                break
            got.extend(frames)
    finally:
        os.close(r)
        if w != -1:
            os.close(w)
    assert [(k, t, n, bytes(p)) for k, t, n, p in got] == [
        (Kind.TASK, 1, 0.0, b"a"),
        (Kind.RESULT, 2, 0.5, big),
        (Kind.LOAD, 3, 1.0, b"z"),
    ]


def test_out_of_band_buffers_round_trip() -> None:
    """Test that large protocol-5 buffers travel out of band, and small ones in the stream."""
    from procoord._wire import dumps_parts, load_payload

    from ._funcs import Blob

    big = Blob(bytearray(range(256)) * 4096)
    parts = dumps_parts({"blob": big, "n": 1}, "task")
    # head, pickle stream, the buffer
    assert len(parts) == 3 and isinstance(parts[2], memoryview) and parts[2].nbytes == 2**20
    assert load_payload(b"".join(parts)) == {"blob": big, "n": 1}
    assert len(dumps_parts(Blob(bytearray(b"small")), "task")) == 1
    assert load_payload(b"".join(dumps_parts(b"x" * 2**20, "task"))) == b"x" * 2**20


def test_scalars_come_back_as_they_were_of_their_exact_type() -> None:
    """Test that ints (of any size), floats (NaN, infinities, -0.0), bools, None and
    strings (lone surrogates too) come back equal and of their exact type, subclasses
    of them (an IntEnum, a str subclass) too, from bytes or from a memoryview."""
    import enum
    import math

    from procoord._wire import dumps_parts, load_payload

    class Level(enum.IntEnum):
        HIGH = 3

    class Name(str):
        pass

    values: list[Any] = [0, -1, 2**200, -(2**70), 1.5, -0.0, math.inf, -math.inf, True, False, None]
    values += ["", "héllo", "\udcff", "x" * 100_000, Level.HIGH, Name("n")]
    for value in values:
        [payload] = dumps_parts(value, "task", snapshot=True)
        for received in (payload, memoryview(payload)):
            back = load_payload(received)
            assert type(back) is type(value) and back == value and repr(back) == repr(value)
    nan = load_payload(dumps_parts(math.nan, "task")[0])
    assert type(nan) is float and math.isnan(nan)


async def test_scalar_tasks_and_results_round_trip_through_a_worker(coord: Coordinator) -> None:
    """Test that scalar tasks and results keep their values and types through a worker."""
    await coord.add_worker("w", _funcs.echo)
    for value in (7, 2**100, -0.0, True, None, "\udcff", "é" * 70_000):
        result, _ = await coord.call(value)
        assert type(result) is type(value) and repr(result) == repr(value)


def test_large_bytes_go_out_of_band_and_come_back_as_they_were() -> None:
    """Test that large bytes and bytearray objects (at the top, or in a tuple, list or
    dict) travel after the pickle stream and unpickle as bytes and bytearray again,
    while small ones and deeper ones stay in the stream."""
    from procoord._wire import dumps_parts, load_payload

    big, array = bytes(range(256)) * 2048, bytearray(b"y" * 2**19)
    for value in (big, array, (1, big), [array, "x"], {"k": (big, array)}):
        parts = dumps_parts(value, "task", snapshot=True)
        assert len(parts) > 2 and sum(len(p) for p in parts[2:]) >= 2**19
        back = load_payload(b"".join(parts))
        assert back == value and type(back) is type(value)
    assert len(dumps_parts(b"x" * 1000, "task")) == 1
    deep = [[[big]]]
    assert len(dumps_parts(deep, "task")) == 1 and load_payload(dumps_parts(deep, "task")[0]) == deep


def test_each_record_decodes_what_its_encoder_wrote() -> None:
    """Test that READY, LOAD, START_FAILED and error records round-trip through _wire,
    and that the parent turns error records into procoord errors."""
    from procoord import TaskProcessError, WorkerStartError, _remote, _wire

    assert _wire.read_ready(_wire.ready_frame(4321, True)) == (4321, True)
    assert _wire.read_ready(_wire.ready_frame(7, False)) == (7, False)
    assert _wire.read_load(_wire.load_frame(1 << 30, 12.5)) == (1 << 30, 12.5)
    failed = _wire.start_failed_frame(ValueError("no model"))
    assert failed[0] == Kind.START_FAILED
    start = _remote.start_error("w", failed[3])
    assert isinstance(start, WorkerStartError) and "ValueError: no model" in start.reason
    try:
        raise KeyError("missing")
    except KeyError as exc:
        record = _wire.pack_error(exc, "error")
    unpacked = _wire.unpack_error(record)
    assert unpacked.summary == "KeyError: 'missing'" and "raise KeyError" in unpacked.traceback
    error = _remote.task_error("w", record)
    assert isinstance(error, TaskProcessError) and isinstance(error.__cause__, KeyError)
    bad = _remote.bad_frame_error(Kind.BAD_RESULT, _wire.pack_error(TypeError("no pickle"), "result"))
    assert isinstance(bad, SerializationError) and bad.stage == "result" and "no pickle" in str(bad)
    outcomes, _ = _remote.outcome_pairs(
        (_remote.batch_outcomes("w", ([1, None, None], {1: (False, record), 2: (None, record)})), "w")
    )
    assert outcomes[0] == (True, 1) and not outcomes[1][0] and not outcomes[2][0]
    assert isinstance(outcomes[1][1], TaskProcessError) and isinstance(outcomes[2][1], SerializationError)


def test_reader_stops_at_a_header_of_unknown_kind() -> None:
    """Test that the frames before a stray header are delivered, and nothing after it."""
    reader = FrameReader(FROM_WORKER_KINDS)
    good = frame(Kind.RESULT, 7, 0.5, b"ok")
    stray = HEADER.pack(0, 250, 0, 0.0)
    assert reader.feed(good + stray + good) == [(Kind.RESULT, 7, 0.5, b"ok")]
    assert reader.corrupt == "a frame header of unknown kind 250 (1 frames read before it)"
