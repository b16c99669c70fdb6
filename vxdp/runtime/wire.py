"""Wire ports: where a host's frames come from and go to (and a guest's stack side).

    --wire null                                   nothing arrives; what is sent is counted
    --wire pcap:IN.pcap[,out=OUT.pcap]            replay IN; capture what is sent to OUT
    --wire pcap:out=OUT.pcap                      capture only
    --wire gen:flows=N,size=S,rate=PPS,count=C,seed=X[,proto=udp4][,out=OUT.pcap]
    --wire tap:NAME[,out=OUT.pcap]                a Linux TAP device (root / CAP_NET_ADMIN)

Every port delivers bursts (`await port.receive(limit)`: up to `limit` frames, None once
the source is exhausted, an empty list never) and accepts bursts (`port.send(frames)`).
A port with frames at hand returns them without yielding to other tasks (a cancelled
caller still gets Cancelled): the caller decides when others run, as the host's wire pump
does every TURN seconds, rather than once a burst.
`out=` on any port writes what it is sent to a classic pcap file (LINKTYPE_ETHERNET) as it
goes, flushed after every burst, so tshark reads it while the process runs and after it
is killed.  Replay runs as fast as the receiver takes frames; `gen` paces itself to `rate`
packets per second (0: as fast as taken) and stops after `count` frames (0: never).

`parse_spec()` is pure and checks everything; `open_port()` opens files and devices.
"""

from __future__ import annotations

import fcntl
import math
import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import trio

from vxdp.errors import UsageError
from vxdp.frames import PackedFrames, total_bytes
from vxdp.packets import TrafficGenerator
from vxdp.pcap import Packet, pcap_bytes, read_pcap

KINDS = ("null", "pcap", "gen", "tap")
_GEN_KEYS = {"flows", "size", "rate", "count", "seed", "proto", "out"}
_PROTOS = ("udp4", "tcp4", "icmp4", "udp6", "tcp6", "icmp6")
# <linux/if_tun.h>
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_MAX_FRAME = 65535


@dataclass(frozen=True)
class WireSpec:
    """A parsed `--wire` value."""

    kind: str
    path: str | None = None  # pcap input, or the tap device's name
    out: str | None = None
    options: dict[str, int | str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [self.path] if self.path else []
        parts += [f"{k}={v}" for k, v in self.options.items()]
        parts += [f"out={self.out}"] if self.out else []
        return f"{self.kind}:{','.join(parts)}" if parts else self.kind


def _int_option(key: str, text: str, low: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"--wire gen: {key}={text!r} is not an integer") from None
    if value < low:
        raise UsageError(f"--wire gen: {key}={value} is below {low}")
    return value


def parse_spec(text: str) -> WireSpec:
    """Parse a `--wire` value (see the module docstring); UsageError names what is wrong."""
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise UsageError(f"--wire {text!r}: unknown port kind {kind!r} (one of "
                         f"{', '.join(KINDS)})")
    items = [p for p in rest.split(",") if p] if rest else []
    if kind == "null":
        if items:
            raise UsageError(f"--wire {text!r}: null takes no options")
        return WireSpec("null")
    path: str | None = None
    out: str | None = None
    options: dict[str, int | str] = {}
    for i, item in enumerate(items):
        key, eq, value = item.partition("=")
        if not eq:
            if i != 0 or kind == "gen":
                raise UsageError(f"--wire {text!r}: {item!r} is not key=value")
            path = item
            continue
        if not value:
            raise UsageError(f"--wire {text!r}: {key}= has no value")
        if key == "out":
            out = value
        elif kind != "gen":
            raise UsageError(f"--wire {text!r}: unknown option {key!r} (only out=)")
        elif key not in _GEN_KEYS:
            raise UsageError(f"--wire {text!r}: unknown option {key!r} (gen takes "
                             f"{', '.join(sorted(_GEN_KEYS))})")
        elif key == "proto":
            if value not in _PROTOS:
                raise UsageError(f"--wire {text!r}: proto {value!r} is not one of "
                                 f"{', '.join(_PROTOS)}")
            options[key] = value
        else:
            low = {"flows": 1, "size": 60, "rate": 0, "count": 0, "seed": 0}[key]
            options[key] = _int_option(key, value, low)
    if kind == "pcap" and path is None and out is None:
        raise UsageError(f"--wire {text!r}: pcap needs an input file, out=, or both")
    if kind == "tap" and not path:
        raise UsageError(f"--wire {text!r}: tap needs a device name (tap:NAME)")
    if kind == "gen" and int(options.get("size", 60)) > _MAX_FRAME:
        raise UsageError(f"--wire {text!r}: size {options['size']} is above {_MAX_FRAME}")
    return WireSpec(kind, path, out, options)


class PcapWriter:
    """A classic pcap file written as frames come (header first, records appended)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: IO[bytes] | None = open(path, "wb")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        self._file.write(pcap_bytes([]))
        self._file.flush()

    def write(self, frames: Sequence[bytes]) -> None:
        if self._file is None or not frames:
            return
        stamp = time.time_ns()
        records = pcap_bytes([Packet(f, stamp) for f in frames])[24:]
        self._file.write(records)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class PackedRun:
    """Frames a port has at hand for the host's C pump to take without asking it
    (`WirePort.packed_run`): `frames` from `at`, round again from the first with
    `cycle`, at most `limit` of them."""

    frames: PackedFrames
    at: int
    cycle: bool
    limit: int


class WirePort(ABC):
    """A source and sink of frames; see the module docstring."""

    def __init__(self, spec: WireSpec) -> None:
        self.spec = spec
        self.rx_packets = self.rx_bytes = 0  # frames the port delivered
        self.tx_packets = self.tx_bytes = 0  # frames the port was sent
        self._capture = PcapWriter(spec.out) if spec.out else None

    @abstractmethod
    async def _next(self, limit: int) -> Sequence[bytes] | None:
        """Up to `limit` frames (at least one), or None when there will be no more."""

    async def receive(self, limit: int = 32) -> Sequence[bytes] | None:
        if limit < 1:
            raise UsageError(f"burst limit {limit} is below 1")
        frames = await self._next(limit)
        if frames is not None:
            self.rx_packets += len(frames)
            self.rx_bytes += total_bytes(frames)
        return frames

    def packed_run(self) -> PackedRun | None:
        """The frames the port has at hand, packed, for the host's C pump (None: ask
        `receive`).  Whoever takes some reports it with `took`."""
        return None

    def took(self, run: PackedRun, frames: int, nbytes: int, at: int) -> None:
        """`frames` (`nbytes`) of `run` were taken, up to frame `at`: as `receive`
        would have delivered them."""
        self.rx_packets += frames
        self.rx_bytes += nbytes
        self._advance(run, frames, at)

    def _advance(self, run: PackedRun, frames: int, at: int) -> None:  # noqa: B027
        """Move the port's position past what `took` reports (ports with runs)."""

    def send(self, frames: Sequence[bytes]) -> None:
        """Frames leaving through this port (captured when out= was given)."""
        if not frames:
            return
        self.tx_packets += len(frames)
        self.tx_bytes += total_bytes(frames)
        if self._capture is not None:
            self._capture.write(frames)
        self._emit(frames)

    def _emit(self, frames: Sequence[bytes]) -> None:  # noqa: B027 (optional hook)
        """Put frames on the medium (files and generators have none)."""

    def stats(self) -> dict[str, object]:
        return {"spec": self.spec.describe(), "rx_packets": self.rx_packets,
                "rx_bytes": self.rx_bytes, "tx_packets": self.tx_packets,
                "tx_bytes": self.tx_bytes}

    def close(self) -> None:
        if self._capture is not None:
            self._capture.close()


class NullPort(WirePort):
    async def _next(self, limit: int) -> Sequence[bytes] | None:
        return None


class PcapPort(WirePort):
    """Replays a capture (classic pcap or pcapng) once."""

    def __init__(self, spec: WireSpec) -> None:
        # packed once: a burst is a view of the capture, no work per frame
        self._frames = PackedFrames.pack(p.data for p in read_pcap(spec.path)) \
            if spec.path else PackedFrames.pack([])
        self._at = 0
        super().__init__(spec)

    def packed_run(self) -> PackedRun | None:
        left = len(self._frames) - self._at
        return PackedRun(self._frames, self._at, False, left) if left > 0 else None

    def _advance(self, run: PackedRun, frames: int, at: int) -> None:
        self._at = at

    async def _next(self, limit: int) -> Sequence[bytes] | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._at >= len(self._frames):
            return None
        burst = self._frames[self._at:self._at + limit]
        self._at += len(burst)
        return burst


class GenPort(WirePort):
    """Seeded traffic from `vxdp.packets.TrafficGenerator`, paced to `rate` pps.

    Building a frame costs the generator tens of microseconds, so, as pktgen and
    testpmd's txonly cycle prebuilt templates, the first POOL frames are generated and
    kept, and from then on the same POOL frames go round again: a run of at most POOL
    frames is exactly the generator's sequence, a longer one repeats it."""

    POOL = 4096

    def __init__(self, spec: WireSpec) -> None:
        o = spec.options
        size = o.get("size")
        proto = o.get("proto")
        sizes = (int(size),) if size is not None else None
        seed, flows = int(o.get("seed", 1)), int(o.get("flows", 16))
        self.gen = TrafficGenerator(seed, flows=flows, sizes=sizes, mix={str(proto): 1.0}) \
            if proto else TrafficGenerator(seed, flows=flows, sizes=sizes)
        self.rate = int(o.get("rate", 0))
        self.count = int(o.get("count", 0))
        self._made = 0
        self._start: float | None = None
        self._kept: list[bytes] = []
        self._pool: PackedFrames | None = None  # once POOL frames are kept
        super().__init__(spec)

    def packed_run(self) -> PackedRun | None:
        """The kept pool, going round, once it is complete and without pacing."""
        if self._pool is None or self.rate or (self.count and self._made >= self.count):
            return None
        limit = self.count - self._made if self.count else 1 << 62
        return PackedRun(self._pool, self._made % self.POOL, True, limit)

    def _advance(self, run: PackedRun, frames: int, at: int) -> None:
        self._made += frames

    async def _next(self, limit: int) -> Sequence[bytes] | None:
        if self.count and self._made >= self.count:
            return None
        want = limit if not self.count else min(limit, self.count - self._made)
        if self.rate:
            if self._start is None:
                self._start = trio.current_time()
            due = math.floor((trio.current_time() - self._start) * self.rate) - self._made + 1
            if due < 1:
                await trio.sleep_until(self._start + self._made / self.rate)
                due = 1
            want = min(want, due)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        if self._pool is None:
            fresh = self.gen.packets(min(want, self.POOL - len(self._kept)))
            self._kept += fresh
            if len(self._kept) >= self.POOL:
                self._pool = PackedFrames.pack(self._kept[:self.POOL])
                self._kept = []
            self._made += len(fresh)
            return PackedFrames.pack(fresh)
        at = self._made % self.POOL
        burst = self._pool[at:at + want]  # up to the pool's end: the next burst wraps
        self._made += len(burst)
        return burst


class TapPort(WirePort):
    """A TAP device (IFF_TAP | IFF_NO_PI): frames the kernel sends it arrive here."""

    def __init__(self, spec: WireSpec) -> None:
        assert spec.path is not None
        if os.geteuid() != 0:
            raise UsageError(f"--wire tap:{spec.path} needs root (CAP_NET_ADMIN)")
        if len(spec.path.encode()) >= 16:
            raise UsageError(f"tap name {spec.path!r} is longer than 15 bytes (IFNAMSIZ)")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise UsageError(f"--wire tap: cannot open /dev/net/tun: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", spec.path.encode(),
                                                    _IFF_TAP | _IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            raise UsageError(f"--wire tap:{spec.path}: TUNSETIFF failed: {exc.strerror}") \
                from None
        self.fd = fd
        self.dropped = 0
        super().__init__(spec)

    async def _next(self, limit: int) -> Sequence[bytes] | None:
        frames: list[bytes] = []
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            while len(frames) < limit:
                try:
                    frames.append(os.read(self.fd, _MAX_FRAME))
                except BlockingIOError:
                    break
            if frames:
                return frames
            await trio.lowlevel.wait_readable(self.fd)

    def _emit(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            try:
                os.write(self.fd, frame)
            except (BlockingIOError, OSError):
                self.dropped += 1

    def close(self) -> None:
        super().close()
        if self.fd >= 0:
            if _in_trio():
                trio.lowlevel.notify_closing(self.fd)
            os.close(self.fd)
            self.fd = -1


def open_port(spec: WireSpec | str) -> WirePort:
    """Open the port a spec names (files are read, devices created, now)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "pcap" and spec.path is not None and not Path(spec.path).is_file():
        raise UsageError(f"--wire pcap: no such file {spec.path}")
    ports: dict[str, type[WirePort]] = {"null": NullPort, "pcap": PcapPort, "gen": GenPort,
                                        "tap": TapPort}
    return ports[spec.kind](spec)


__all__ = ["KINDS", "GenPort", "NullPort", "PcapPort", "PcapWriter", "TapPort", "WirePort",
           "WireSpec", "open_port", "parse_spec"]
