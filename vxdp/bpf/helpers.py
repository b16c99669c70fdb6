"""The helper table: ids, names and prototypes, shared by the C core, the verifier and the
device profiles.

Ids are the kernel's (`__BPF_FUNC_MAPPER` in include/uapi/linux/bpf.h).  Argument and return
types use the kernel's `enum bpf_arg_type` / `enum bpf_return_type` vocabulary so that
verifier messages can follow the kernel's wording.  The C core implements exactly the ids
listed with `xdp=True`; a profile (rfc2019, host, smartnic) is a subset of these ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vxdp.bpf.program import MapType


class Arg(Enum):
    ANYTHING = "ARG_ANYTHING"
    CONST_MAP_PTR = "ARG_CONST_MAP_PTR"
    PTR_TO_MAP_KEY = "ARG_PTR_TO_MAP_KEY"
    PTR_TO_MAP_VALUE = "ARG_PTR_TO_MAP_VALUE"
    PTR_TO_CTX = "ARG_PTR_TO_CTX"
    PTR_TO_MEM = "ARG_PTR_TO_MEM"  # read-only memory of the size given by the next arg
    PTR_TO_MEM_OR_NULL = "ARG_PTR_TO_MEM_OR_NULL"
    PTR_TO_UNINIT_MEM = "ARG_PTR_TO_UNINIT_MEM"  # written by the helper, size in next arg
    PTR_TO_MEM_RW = "ARG_PTR_TO_MEM (writable)"  # the helper reads and writes it (fib_lookup)
    CONST_SIZE = "ARG_CONST_SIZE"
    CONST_SIZE_OR_ZERO = "ARG_CONST_SIZE_OR_ZERO"
    CONST_ALLOC_SIZE_OR_ZERO = "ARG_CONST_ALLOC_SIZE_OR_ZERO"
    PTR_TO_LONG = "ARG_PTR_TO_LONG"  # 8 writable, aligned bytes (strtol's result)
    PTR_TO_RINGBUF_MEM = "ARG_PTR_TO_RINGBUF_MEM"  # a reservation, released by the call
    PTR_TO_FUNC = "ARG_PTR_TO_FUNC"  # a callback: LD_IMM64 of a function (BPF_PSEUDO_FUNC)
    PTR_TO_STACK_OR_NULL = "ARG_PTR_TO_STACK_OR_NULL"  # the callback's context


class Ret(Enum):
    INTEGER = "RET_INTEGER"
    VOID = "RET_VOID"
    PTR_TO_MAP_VALUE_OR_NULL = "RET_PTR_TO_MAP_VALUE_OR_NULL"
    PTR_TO_RINGBUF_MEM_OR_NULL = "RET_PTR_TO_RINGBUF_MEM_OR_NULL"


@dataclass(frozen=True)
class Helper:
    id: int
    name: str
    args: tuple[Arg, ...]
    ret: Ret
    # map types accepted for a CONST_MAP_PTR argument (None: any map usable by lookups)
    map_types: frozenset[MapType] | None = None
    xdp: bool = True  # callable from XDP programs (and implemented by the C core)
    gpl_only: bool = False
    # answers from the host's own state (routes, devices): never for an offloaded guest
    # program (the RFC discussion's objection to fib_lookup), whatever a profile says
    host_state: bool = False


_A = Arg
_KV_MAPS = frozenset({MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                      MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE})
_REDIRECT_MAPS = frozenset({MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP})

HELPERS: dict[int, Helper] = {h.id: h for h in [
    Helper(1, "map_lookup_elem", (_A.CONST_MAP_PTR, _A.PTR_TO_MAP_KEY),
           Ret.PTR_TO_MAP_VALUE_OR_NULL,
           _KV_MAPS | {MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.XSKMAP,
                       MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}),
    Helper(2, "map_update_elem",
           (_A.CONST_MAP_PTR, _A.PTR_TO_MAP_KEY, _A.PTR_TO_MAP_VALUE, _A.ANYTHING),
           Ret.INTEGER, _KV_MAPS),
    Helper(3, "map_delete_elem", (_A.CONST_MAP_PTR, _A.PTR_TO_MAP_KEY), Ret.INTEGER, _KV_MAPS),
    Helper(5, "ktime_get_ns", (), Ret.INTEGER),
    # arguments 3-5 are the format's values: the kernel's prototype leaves them unchecked
    # (clang does not set them for a bare format); the core reads them as plain numbers
    Helper(6, "trace_printk", (_A.PTR_TO_MEM, _A.CONST_SIZE), Ret.INTEGER, gpl_only=True),
    Helper(7, "get_prandom_u32", (), Ret.INTEGER),
    Helper(8, "get_smp_processor_id", (), Ret.INTEGER),
    Helper(12, "tail_call", (_A.PTR_TO_CTX, _A.CONST_MAP_PTR, _A.ANYTHING), Ret.VOID,
           frozenset({MapType.PROG_ARRAY})),
    Helper(23, "redirect", (_A.ANYTHING, _A.ANYTHING), Ret.INTEGER),
    Helper(25, "perf_event_output",
           (_A.PTR_TO_CTX, _A.CONST_MAP_PTR, _A.ANYTHING, _A.PTR_TO_MEM, _A.CONST_SIZE_OR_ZERO),
           Ret.INTEGER, frozenset({MapType.PERF_EVENT_ARRAY}), gpl_only=True),
    Helper(28, "csum_diff",
           (_A.PTR_TO_MEM_OR_NULL, _A.CONST_SIZE_OR_ZERO, _A.PTR_TO_MEM_OR_NULL,
            _A.CONST_SIZE_OR_ZERO, _A.ANYTHING), Ret.INTEGER),
    Helper(40, "csum_update", (_A.PTR_TO_CTX, _A.ANYTHING), Ret.INTEGER, xdp=False),
    Helper(44, "xdp_adjust_head", (_A.PTR_TO_CTX, _A.ANYTHING), Ret.INTEGER),
    Helper(51, "redirect_map", (_A.CONST_MAP_PTR, _A.ANYTHING, _A.ANYTHING), Ret.INTEGER,
           _REDIRECT_MAPS),
    Helper(54, "xdp_adjust_meta", (_A.PTR_TO_CTX, _A.ANYTHING), Ret.INTEGER),
    Helper(65, "xdp_adjust_tail", (_A.PTR_TO_CTX, _A.ANYTHING), Ret.INTEGER),
    Helper(69, "fib_lookup", (_A.PTR_TO_CTX, _A.PTR_TO_MEM_RW, _A.CONST_SIZE, _A.ANYTHING),
           Ret.INTEGER, gpl_only=True, host_state=True),
    Helper(105, "strtol", (_A.PTR_TO_MEM, _A.CONST_SIZE, _A.ANYTHING, _A.PTR_TO_LONG),
           Ret.INTEGER),
    Helper(106, "strtoul", (_A.PTR_TO_MEM, _A.CONST_SIZE, _A.ANYTHING, _A.PTR_TO_LONG),
           Ret.INTEGER),
    Helper(118, "jiffies64", (), Ret.INTEGER),
    Helper(125, "ktime_get_boot_ns", (), Ret.INTEGER),
    Helper(130, "ringbuf_output",
           (_A.CONST_MAP_PTR, _A.PTR_TO_MEM, _A.CONST_SIZE_OR_ZERO, _A.ANYTHING), Ret.INTEGER,
           frozenset({MapType.RINGBUF})),
    Helper(131, "ringbuf_reserve", (_A.CONST_MAP_PTR, _A.CONST_ALLOC_SIZE_OR_ZERO, _A.ANYTHING),
           Ret.PTR_TO_RINGBUF_MEM_OR_NULL, frozenset({MapType.RINGBUF})),
    Helper(132, "ringbuf_submit", (_A.PTR_TO_RINGBUF_MEM, _A.ANYTHING), Ret.VOID),
    Helper(133, "ringbuf_discard", (_A.PTR_TO_RINGBUF_MEM, _A.ANYTHING), Ret.VOID),
    Helper(181, "loop", (_A.ANYTHING, _A.PTR_TO_FUNC, _A.PTR_TO_STACK_OR_NULL, _A.ANYTHING),
           Ret.INTEGER),
    Helper(188, "xdp_get_buff_len", (_A.PTR_TO_CTX,), Ret.INTEGER),
    Helper(189, "xdp_load_bytes", (_A.PTR_TO_CTX, _A.ANYTHING, _A.PTR_TO_UNINIT_MEM,
                                   _A.CONST_SIZE), Ret.INTEGER),
    Helper(190, "xdp_store_bytes", (_A.PTR_TO_CTX, _A.ANYTHING, _A.PTR_TO_MEM, _A.CONST_SIZE),
           Ret.INTEGER),
]}

HELPERS_BY_NAME: dict[str, Helper] = {h.name: h for h in HELPERS.values()}

CALLBACK_HELPER_IDS: frozenset[int] = frozenset({181})
"""Helpers that call a callback of the program (bpf_loop): the callback is verified as a
loop body, from the call, as often as it may run."""

XDP_HELPER_IDS: frozenset[int] = frozenset(i for i, h in HELPERS.items() if h.xdp)
"""Every helper the C core runs for XDP programs (the `host` profile)."""

HOST_STATE_HELPER_IDS: frozenset[int] = frozenset(i for i, h in HELPERS.items() if h.host_state)
"""Helpers that read the host's own state (fib_lookup): for programs the host loads itself,
never for an offload target."""

RFC2019_HELPER_IDS: frozenset[int] = frozenset({1, 2, 3, 5, 7, 40, 44, 54, 65, 105, 106})
"""The helpers the 2019 RFC let an offloaded program call (patch 18/18)."""
