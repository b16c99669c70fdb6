"""The raw bpf(2) system call through ctypes: one function per command, nothing more.

    fd = map_create(MapType.HASH, 4, 8, 64, name="counts")
    map_update(fd, key, value)
    prog_fd, log = prog_load(ProgType.XDP, insns, "GPL", log_level=1)

`union bpf_attr` is packed with `struct` at the offsets of include/uapi/linux/bpf.h into a
zeroed buffer (the kernel requires the bytes past the fields it knows to be zero).  Failures
raise `OSError` with the kernel's errno; callers turn that into the error their layer speaks
(`MapError`, `InvalidProgram`, `KernelUnavailable`).  Nothing here keeps state.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass

ATTR_SIZE = 144  # up to prog_load's log_true_size; enough for every command used here
NR_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "riscv64": 280, "ppc64le": 361,
          "s390x": 351}


class Cmd:
    """enum bpf_cmd (the commands vxdp uses)."""

    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    PROG_TEST_RUN = 10
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    BTF_LOAD = 18
    MAP_FREEZE = 22


BPF_F_XDP_HAS_FRAGS = 1 << 5  # prog_flags
BPF_XDP = 37  # enum bpf_attach_type: what libbpf sets for SEC("xdp")
BPF_OBJ_NAME_LEN = 16

_libc: ctypes.CDLL | None = None


def syscall_number() -> int | None:
    """__NR_bpf for this machine, None when vxdp does not know it."""
    if platform.system() != "Linux":
        return None
    return NR_BPF.get(platform.machine())


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """bpf(cmd, &attr, sizeof(attr)); raises OSError(errno) on failure."""
    global _libc
    nr = syscall_number()
    if nr is None:
        raise OSError(38, f"no bpf() syscall number for {platform.system()} "
                          f"{platform.machine()}")
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syscall.restype = ctypes.c_long
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr,
                        ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _attr() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(ATTR_SIZE)


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def obj_name(name: str) -> bytes:
    """A name the kernel accepts: [A-Za-z0-9_.], at most 15 bytes (bpf_obj_name_cpy)."""
    clean = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in name)
    return clean.encode()[:BPF_OBJ_NAME_LEN - 1]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, name: str = "", inner_map_fd: int = 0) -> int:
    attr = _attr()
    struct.pack_into("<6I", attr, 0, map_type, key_size, value_size, max_entries, flags,
                     inner_map_fd)
    struct.pack_into("16s", attr, 28, obj_name(name))
    return bpf(Cmd.MAP_CREATE, attr)


def _elem(fd: int, key: ctypes.Array[ctypes.c_char] | None,
          value: ctypes.Array[ctypes.c_char] | None, flags: int = 0) -> ctypes.Array[ctypes.c_char]:
    attr = _attr()
    struct.pack_into("<IIQQQ", attr, 0, fd, 0, _addr(key), _addr(value), flags)
    return attr


def map_lookup(fd: int, key: bytes, value_len: int) -> bytes | None:
    """The value under key, None on ENOENT."""
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_len)
    try:
        bpf(Cmd.MAP_LOOKUP_ELEM, _elem(fd, k, v))
    except OSError as exc:
        if exc.errno == 2:
            return None
        raise
    return v.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    k, v = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    bpf(Cmd.MAP_UPDATE_ELEM, _elem(fd, k, v, flags))


def map_delete(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    bpf(Cmd.MAP_DELETE_ELEM, _elem(fd, k, None))


def map_next_key(fd: int, key: bytes | None, key_size: int) -> bytes | None:
    """The key after `key` (the first key for None); None after the last."""
    k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
    nxt = ctypes.create_string_buffer(max(key_size, 1))
    try:
        bpf(Cmd.MAP_GET_NEXT_KEY, _elem(fd, k, nxt))
    except OSError as exc:
        if exc.errno == 2:
            return None
        raise
    return nxt.raw[:key_size]


def map_fd_by_id(map_id: int) -> int:
    """BPF_MAP_GET_FD_BY_ID: a new fd of the map with that id."""
    attr = _attr()
    struct.pack_into("<I", attr, 0, map_id)
    return bpf(Cmd.MAP_GET_FD_BY_ID, attr)


def map_freeze(fd: int) -> None:
    attr = _attr()
    struct.pack_into("<I", attr, 0, fd)
    bpf(Cmd.MAP_FREEZE, attr)


@dataclass(frozen=True)
class LoadResult:
    fd: int | None  # None when the verifier refused the program
    log: str
    errno: int = 0


def btf_load(data: bytes, log_size: int = 1 << 16) -> int:
    """BPF_BTF_LOAD; OSError on refusal, with the kernel's BTF log in its message."""
    buf = ctypes.create_string_buffer(data, len(data))
    log = ctypes.create_string_buffer(log_size)
    attr = _attr()
    struct.pack_into("<QQIII", attr, 0, _addr(buf), _addr(log), len(data), log_size, 1)
    try:
        return bpf(Cmd.BTF_LOAD, attr)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror}: {_log_text(log).strip()}") from None


FUNC_INFO = struct.Struct("<II")  # struct bpf_func_info: insn_off, type_id


def prog_load(prog_type: int, insns: bytes, license: str, *, log_level: int = 0,
              log_size: int = 0, prog_flags: int = 0, name: str = "",
              expected_attach_type: int = 0, btf_fd: int = 0,
              func_info: tuple[tuple[int, int], ...] = ()) -> LoadResult:
    """BPF_PROG_LOAD; a refusal comes back as LoadResult(fd=None, log, errno).  With
    `btf_fd`, `func_info` gives (insn index, FUNC type id) for each function."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode() + b"\0")
    log = ctypes.create_string_buffer(log_size) if log_level and log_size else None
    attr = _attr()
    struct.pack_into("<IIQQIIQII", attr, 0, prog_type, len(insns) // 8, _addr(code), _addr(lic),
                     log_level if log else 0, log_size if log else 0, _addr(log), 0, prog_flags)
    struct.pack_into("16s", attr, 48, obj_name(name))
    struct.pack_into("<I", attr, 68, expected_attach_type)
    finfo = None
    if btf_fd and func_info:
        raw = b"".join(FUNC_INFO.pack(*rec) for rec in func_info)
        finfo = ctypes.create_string_buffer(raw, len(raw))
        struct.pack_into("<IIQI", attr, 72, btf_fd, FUNC_INFO.size, _addr(finfo),
                         len(func_info))
    try:
        fd = bpf(Cmd.PROG_LOAD, attr)
    except OSError as exc:
        return LoadResult(None, _log_text(log), exc.errno or 0)
    return LoadResult(fd, _log_text(log))


def _log_text(log: ctypes.Array[ctypes.c_char] | None) -> str:
    if log is None:
        return ""
    return log.raw.split(b"\0", 1)[0].decode(errors="replace")


@dataclass(frozen=True)
class TestRun:
    retval: int
    data: bytes
    duration_ns: int  # average per repetition, as the kernel reports it


def prog_test_run(fd: int, data: bytes, *, repeat: int = 1, ctx: bytes | None = None,
                  data_out_size: int | None = None) -> TestRun:
    """BPF_PROG_TEST_RUN over one packet; ENOSPC is retried with a larger output buffer."""
    size = data_out_size or len(data) + 8192
    for _ in range(4):
        din = ctypes.create_string_buffer(data, max(len(data), 1))
        dout = ctypes.create_string_buffer(size)
        cin = ctypes.create_string_buffer(ctx, len(ctx)) if ctx is not None else None
        attr = _attr()
        struct.pack_into("<IIIIQQII", attr, 0, fd, 0, len(data), size, _addr(din), _addr(dout),
                         repeat, 0)
        if cin is not None:
            struct.pack_into("<IIQ", attr, 40, len(ctx or b""), 0, _addr(cin))
        try:
            bpf(Cmd.PROG_TEST_RUN, attr)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC: the packet grew past data_out
                size *= 4
                continue
            raise
        retval, _, size_out = struct.unpack_from("<III", attr, 4)
        duration = struct.unpack_from("<I", attr, 36)[0]
        return TestRun(retval, dout.raw[:size_out], duration)
    raise OSError(28, "packet output larger than the test run buffer")


PROG_INFO_SIZE = 232  # struct bpf_prog_info up to attach_btf_id


@dataclass(frozen=True)
class ProgInfo:
    """What BPF_OBJ_GET_INFO_BY_FD tells about a loaded program (the parts vxdp uses)."""

    id: int
    tag: bytes
    name: str
    xlated: bytes  # the instructions after the verifier's rewrites
    jited_len: int
    map_ids: tuple[int, ...]


def map_info_id(fd: int) -> int:
    """The id of a map (struct bpf_map_info: type, then id)."""
    info = ctypes.create_string_buffer(80)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _addr(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    return int(struct.unpack_from("<I", info, 4)[0])


def prog_info(fd: int) -> ProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a program: once for the sizes, once for the arrays."""
    info = ctypes.create_string_buffer(PROG_INFO_SIZE)
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, PROG_INFO_SIZE, _addr(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    xlated_len = struct.unpack_from("<I", info, 20)[0]
    nr_maps = struct.unpack_from("<I", info, 52)[0]
    xlated = ctypes.create_string_buffer(max(xlated_len, 1))
    ids = ctypes.create_string_buffer(max(nr_maps * 4, 4))
    info2 = ctypes.create_string_buffer(PROG_INFO_SIZE)
    struct.pack_into("<I", info2, 20, xlated_len)  # xlated_prog_len
    struct.pack_into("<Q", info2, 32, _addr(xlated))  # xlated_prog_insns
    struct.pack_into("<IQ", info2, 52, nr_maps, _addr(ids))  # nr_map_ids, map_ids
    attr = _attr()
    struct.pack_into("<IIQ", attr, 0, fd, PROG_INFO_SIZE, _addr(info2))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr)
    prog_id, tag, jited_len = struct.unpack_from("<I8sI", info2, 4)
    name = info2.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    return ProgInfo(prog_id, tag, name, xlated.raw[:xlated_len], jited_len,
                    struct.unpack_from(f"<{nr_maps}I", ids))

