"""Pickled tasks and results, with their large buffers out of band.

A payload is a plain pickle stream, a scalar (an ``int``, ``float``, ``bool``, ``str`` or
None, of exactly that type) in marshal's format 2, or (first byte zero) a head, the
pickle stream and the buffers taken out of it: protocol-5 buffers (numpy arrays, PickleBuffer) of at
least :data:`OOB_MIN_BYTES`, and ``bytes`` and ``bytearray`` objects of at least
:data:`SHARED_MIN_BYTES` at the top of the object (or in a tuple, list or dict there,
two levels deep). The head says, for each buffer, its kind, its length and where it is:
in the frame after the stream, or in shared memory at an offset.

Moving a buffer of a frame to shared memory, and out of it again on the other side, is
the transport's job (``procoord.backends._shm``, ``procoord._worker.shm``), with
:func:`share` and :func:`resolve`; the rest only pickles and unpickles.
"""

from __future__ import annotations

import io
import marshal
import pickle
import struct
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import cloudpickle

from ..errors import SerializationError
from .memory import receive_pool

__all__ = (
    "MAX_PAYLOAD",
    "PROTOCOL",
    "Parts",
    "Received",
    "SharedSink",
    "dumps",
    "dumps_parts",
    "load_payload",
    "loads",
    "parts_size",
    "payload_size",
    "has_shared",
    "resolve",
    "share",
)

MAX_PAYLOAD = 2**32 - 1
PROTOCOL = 5

# A payload starting with this holds a head, a pickle stream and out-of-band buffers (no
# pickle stream starts with a zero byte). Buffers smaller than OOB_MIN_BYTES stay in the
# stream: below that the copy is cheaper than the bookkeeping.
MAGIC = b"\x00OB2"
OOB_MIN_BYTES = 64 * 1024

# A pickle starts with its PROTO opcode; a scalar in marshal's format 2 (no references,
# so no flag bit) with its type code, an ASCII letter. Marshal takes a few hundred
# instructions for a scalar where a pickle takes thousands (a Pickler and its buffers).
_PICKLE_START = pickle.PROTO[0]
_MARSHAL_VERSION = 2

SHARED_MIN_BYTES = 256 * 1024
"""Buffers of at least this size may travel through shared memory; ``bytes`` and
``bytearray`` objects of this size go out of band (smaller ones stay in the stream)."""

_HEAD = struct.Struct("<4sIQ")  # magic, buffer count, stream length
_DESC = struct.Struct("<BBxxIQQ")  # where, kind, arena generation, length, offset

# Where a buffer is: in the frame; in the frame and also in the sender's shared arena
# (a parent's task, before its transport decides); only in shared memory.
IN_FRAME, IN_FRAME_AND_SHARED, SHARED = 0, 1, 2
# What a buffer is rebuilt as: a protocol-5 buffer, bytes, a bytearray.
BUFFER, BYTES, BYTEARRAY = 0, 1, 2

# Copies out of shared memory this large go to the process's receive pool (warm memory
# reused: procoord._wire.memory); smaller ones to a bytearray.
POOL_COPY_BYTES = 4 << 20

Desc = tuple[int, int, int, int, int]
"""One buffer of a payload: (where, kind, arena generation, length, offset)."""

Placer = Callable[[Desc, "bytes | memoryview"], "tuple[int, int] | None"]
"""Says where in shared memory a buffer of a frame goes: (generation, offset), or None
to leave it in the frame."""

SharedSink = Callable[[Any], "tuple[memoryview, int, int, object] | None"]
"""Copies a task's buffer into shared memory: gives (the copy, the arena's generation,
its offset, a keeper whose death frees it), or None when it does not fit."""

shared_sink: SharedSink | None = None
"""Where :func:`dumps_parts` with ``snapshot=True`` copies large buffers (set by the
local backend while it has workers); None: into fresh bytes."""


class Parts(list):  # type: ignore[type-arg]
    """The parts of a payload: head, stream, buffers. It keeps the shared memory its
    buffers were copied to, which is freed when it goes."""

    __slots__ = ("keepers",)
    keepers: list[object]


class Received(bytes):
    """A received payload whose buffers in shared memory were copied out: its bytes are
    the payload as it came, ``resolved`` holds the copies (None for a buffer that was
    in the frame)."""

    resolved: list[Any]


def parts_size(parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """The size in bytes of a payload given in parts."""
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)


def payload_size(payload: bytes | bytearray | memoryview) -> int:
    """The bytes a received payload stands for (with its buffers from shared memory)."""
    if type(payload) is Received:
        return len(payload) + sum(
            len(b) if isinstance(b, bytes | bytearray) else b.nbytes for b in payload.resolved if b is not None
        )
    return len(payload) if isinstance(payload, bytes) else memoryview(payload).nbytes


def dumps(obj: Any, what: str) -> bytes:
    """Pickle ``obj`` for the other side; raise SerializationError naming ``what``."""
    return _checked(_pickle(obj, what, None, False), what)


def dumps_parts(obj: Any, what: str, *, snapshot: bool = False) -> list[bytes | memoryview]:
    """Pickle ``obj`` with its large buffers out of band: numpy arrays, PickleBuffer,
    large bytes and bytearray objects are not copied into the pickle stream but sent as
    they are, after it. Returns the parts of one payload, in order.

    With ``snapshot=True`` each buffer is copied once, now (into shared memory when
    :data:`shared_sink` takes it): the payload then no longer sees changes the caller
    makes to the object afterwards (a task may wait in the parent before it is
    written), as with ordinary pickling.
    """
    if type(obj) in _SCALARS:  # nothing out of band, nothing of __main__
        data = marshal.dumps(obj, _MARSHAL_VERSION)
        return [data if len(data) <= MAX_PAYLOAD else _checked(data, what)]
    buffers: list[tuple[int, Any]] = []
    data = _pickle(obj, what, buffers, _has_big_bytes(obj))
    if not buffers:
        return [_checked(data, what)]
    descs: list[Desc] = []
    parts = Parts()
    parts.keepers = []
    sink = shared_sink if snapshot else None
    datas: list[bytes | memoryview] = []
    for kind, buffer in buffers:
        size = len(buffer) if kind != BUFFER else buffer.nbytes
        placed = sink(buffer) if sink is not None and size >= SHARED_MIN_BYTES else None
        if placed is not None:
            view, generation, offset, keeper = placed
            parts.keepers.append(keeper)
            descs.append((IN_FRAME_AND_SHARED, kind, generation, size, offset))
            datas.append(view)
            continue
        if snapshot and kind != BYTES:
            buffer = bytes(buffer)
        descs.append((IN_FRAME, kind, 0, size, 0))
        datas.append(buffer)
    parts.extend((pack_head(len(data), descs), data, *datas))
    if parts_size(parts) > MAX_PAYLOAD:
        raise SerializationError(what, f"over the {MAX_PAYLOAD}-byte frame limit")
    return parts


_SCALARS = frozenset({int, float, bool, str, type(None)})
_SEQUENCES = (tuple, list)


def _has_big_bytes(obj: Any, depth: int = 2) -> bool:
    """Whether large bytes or a bytearray sit at the top of ``obj`` or in the first
    items of its tuples, lists and dicts, two levels down (where a task's or a result's
    data usually is; deeper ones stay in the stream)."""
    kind = type(obj)
    if kind in _SCALARS:
        return False
    if kind is bytes or kind is bytearray:
        return len(obj) >= SHARED_MIN_BYTES
    if not depth:
        return False
    if kind is tuple or kind is list or isinstance(obj, _SEQUENCES):  # a batch, a named tuple
        items = obj[:64]
    elif kind is dict:
        items = list(obj.values())[:64] if len(obj) <= 64 else []
    else:
        return False
    for item in items:  # noqa: SIM110 (no generator per call: this runs for every task)
        if _has_big_bytes(item, depth - 1):
            return True
    return False


_cloud_code_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]
_CODE_FILENAME = 10  # where the file name is in CodeType's arguments


def _code_reduce(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """cloudpickle's reduction of a function's code, with its file name kept (cloudpickle
    writes ``<dynamic-code>``): a worker's traceback then names the file, the line and
    its source, for functions of a script as for imported ones."""
    rebuild, args = _cloud_code_reduce(code)
    if len(args) > _CODE_FILENAME and args[_CODE_FILENAME] != code.co_filename:
        args = (*args[:_CODE_FILENAME], code.co_filename, *args[_CODE_FILENAME + 1 :])
    return rebuild, args


class _CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, keeping code objects' file names."""

    dispatch_table: ClassVar[ChainMap[Any, Any]] = ChainMap(
        {types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table
    )


def _cloud_dumps(obj: Any, callback: Any) -> bytes:
    out = io.BytesIO()
    _CloudPickler(out, PROTOCOL, buffer_callback=callback).dump(obj)
    return out.getvalue()


def _lifting_pickler(base: type[pickle.Pickler]) -> type[pickle.Pickler]:
    class Lifting(base):  # type: ignore[valid-type,misc]
        """Takes large bytes and bytearray objects out of the stream (persistent ids)."""

        lifted: list[tuple[int, Any]]

        def persistent_id(self, obj: Any) -> int | None:
            kind = type(obj)
            if (kind is bytes or kind is bytearray) and len(obj) >= SHARED_MIN_BYTES:
                self.lifted.append((BYTES if kind is bytes else BYTEARRAY, obj))
                return len(self.lifted) - 1
            return None

    return Lifting


_LIFTING = {"pickle": _lifting_pickler(pickle.Pickler)}


def _pickle(obj: Any, what: str, buffers: list[tuple[int, Any]] | None, lift: bool) -> bytes:
    callback = None if buffers is None else _collector(buffers)
    try:
        data = _dump(pickle.Pickler, "pickle", obj, callback, buffers, lift)
        # A reference to __main__ would not resolve in the worker: pickle by value instead.
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    if buffers is not None:
        buffers.clear()
    try:
        return _dump(_CloudPickler, "cloudpickle", obj, callback, buffers, lift)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc


def _dump(base: Any, name: str, obj: Any, callback: Any, buffers: list[tuple[int, Any]] | None, lift: bool) -> bytes:
    if not lift or buffers is None:
        if base is pickle.Pickler:
            return pickle.dumps(obj, PROTOCOL, buffer_callback=callback)
        return _cloud_dumps(obj, callback)
    pickler_type = _LIFTING.get(name)
    if pickler_type is None:
        pickler_type = _LIFTING[name] = _lifting_pickler(base)
    out = io.BytesIO()
    pickler = pickler_type(out, PROTOCOL, buffer_callback=callback)
    pickler.lifted = buffers  # type: ignore[attr-defined]
    pickler.dump(obj)
    return out.getvalue()


def _collector(buffers: list[tuple[int, Any]]) -> Callable[[pickle.PickleBuffer], bool]:
    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in the stream
            return True
        if raw.nbytes < OOB_MIN_BYTES:
            return True
        buffers.append((BUFFER, raw))
        return False

    return out_of_band


def _checked(data: bytes, what: str) -> bytes:
    if len(data) > MAX_PAYLOAD:
        raise SerializationError(what, f"{len(data)} bytes pickled is over the {MAX_PAYLOAD}-byte frame limit")
    return data


def loads(data: bytes | bytearray | memoryview, what: str) -> Any:
    """Unpickle bytes from the other side; raise SerializationError naming ``what``."""
    try:
        return load_payload(data)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc


def load_payload(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle a payload made by ``dumps`` or ``dumps_parts``. Out-of-band buffers in
    the frame are read in place: an array rebuilt from one shares the received frame's
    memory; those from shared memory are the copies :func:`resolve` made."""
    first = data[0] if data else _PICKLE_START  # nothing: as pickle says it (EOFError)
    if first == _PICKLE_START:
        return pickle.loads(data)
    if first:
        return marshal.loads(data)
    if data[:4] != MAGIC:
        raise ValueError("a payload starting with a zero byte has no head")
    view = memoryview(data)
    stream_len, descs, pos = read_head(view)
    stream = view[pos : pos + stream_len]
    pos += stream_len
    resolved = data.resolved if type(data) is Received else None
    objects: list[Any] = []
    for i, (where, kind, _, length, _) in enumerate(descs):
        if where == SHARED:
            if resolved is None or resolved[i] is None:
                raise ValueError("a buffer in shared memory came without its contents")
            objects.append(resolved[i])
            continue
        buffer: Any = view[pos : pos + length]
        pos += length
        if kind == BYTES:
            buffer = bytes(buffer)
        elif kind == BYTEARRAY:
            buffer = bytearray(buffer)
        objects.append(buffer)
    oob = [obj for obj, desc in zip(objects, descs, strict=True) if desc[1] == BUFFER]
    if len(oob) == len(objects):
        return pickle.loads(stream, buffers=oob)
    unpickler = pickle.Unpickler(io.BytesIO(stream), buffers=oob)
    unpickler.persistent_load = objects.__getitem__  # type: ignore[method-assign]
    return unpickler.load()


# -- the head, for the transports -------------------------------------------------------


def pack_head(stream_len: int, descs: Sequence[Desc]) -> bytes:
    """The head of a payload with this stream length and these buffers."""
    return _HEAD.pack(MAGIC, len(descs), stream_len) + b"".join(_DESC.pack(*d) for d in descs)


def read_head(data: bytes | bytearray | memoryview) -> tuple[int, list[Desc], int]:
    """(stream length, buffers, where the stream starts) of a payload's head."""
    _, count, stream_len = _HEAD.unpack_from(data)
    pos = _HEAD.size
    descs = [_DESC.unpack_from(data, pos + i * _DESC.size) for i in range(count)]
    return stream_len, descs, pos + count * _DESC.size


def share(parts: Sequence[bytes | memoryview], place: Placer) -> list[bytes | memoryview] | None:
    """The parts of a payload (as :func:`dumps_parts` made them) with buffers moved to
    shared memory: ``place`` gives a buffer's (generation, offset) there, or None to
    leave it in the frame. None when nothing moved."""
    if len(parts) < 3:
        return None
    stream_len, descs, _ = read_head(parts[0])
    out: list[bytes | memoryview] = []
    new_descs: list[Desc] = []
    moved = False
    i = 2
    for desc in descs:
        where, kind, _, length, _ = desc
        if where == SHARED:
            new_descs.append(desc)
            continue
        data = parts[i]
        i += 1
        placed = place(desc, data)
        if placed is None:
            new_descs.append((IN_FRAME, kind, 0, length, 0))
            out.append(data)
        else:
            new_descs.append((SHARED, kind, placed[0], length, placed[1]))
            moved = True
    if not moved:
        return None
    return [pack_head(stream_len, new_descs), parts[1], *out]


def resolve(payload: bytes | bytearray | memoryview, fetch: Callable[[Desc], memoryview | None]) -> Received:
    """A received payload with its buffers in shared memory copied out: ``fetch`` gives
    a buffer's memory, or None when it is not where the head says (the payload then
    fails to unpickle)."""
    _, descs, _ = read_head(payload)
    resolved: list[Any] = []
    for desc in descs:
        view = fetch(desc) if desc[0] == SHARED else None
        resolved.append(None if view is None else copy_out(view, desc[1]))
    received = Received(payload)
    received.resolved = resolved
    return received


def has_shared(payload: bytes | bytearray | memoryview) -> bool:
    """Whether a received payload has buffers in shared memory."""
    if payload[:4] != MAGIC:
        return False
    try:
        _, descs, _ = read_head(payload)
    except struct.error:  # cut short: it fails to unpickle, where it is read
        return False
    return any(d[0] == SHARED for d in descs)


def copy_out(view: memoryview, kind: int) -> Any:
    """A copy of shared memory that the receiver owns: bytes, a bytearray, or a
    writable buffer."""
    if kind == BYTES:
        return bytes(view)
    if kind == BYTEARRAY:
        return bytearray(view)
    if view.nbytes >= POOL_COPY_BYTES:
        pool = receive_pool()
        copied = None if pool is None else pool.copy(view)
        if copied is not None:
            return copied
    return memoryview(bytearray(view))
