"""guest.Driver against a scripted device: the §3.1.1 sequence step by step, refusals,
then the datapath over device-side ring engines (virtio_spec.split) on the driver's rings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from guest import (
    ConfigChanged,
    CtrlCompleted,
    DeviceError,
    Driver,
    FeaturesNegotiated,
    FrameReceived,
    InitFailed,
    InitState,
    Kick,
    KickDecision,
    ReadConfig,
    ReadDeviceFeatures,
    ReadQueueMax,
    ReadStatus,
    Request,
    SetupQueue,
    WriteDriverFeatures,
    WriteStatus,
)
from virtio_spec.errors import LocalProtocolError, RemoteProtocolError
from virtio_spec.features import VirtioFeature as F
from virtio_spec.features import VirtioNetFeature as N
from virtio_spec.features import mask_of
from virtio_spec.offload import PROFILES as XDP_PROFILES
from virtio_spec.split import SplitDeviceQueue
from virtio_spec.status import DeviceStatus as S
from virtio_spec.structs import config_ranges, virtio_net_config, virtio_net_hdr
from virtio_spec.testing import GuestAllocator, guest_memory

MAC = bytes.fromhex("525400abcdef")
OFFER = mask_of((F.VIRTIO_F_VERSION_1, F.VIRTIO_F_EVENT_IDX, N.VIRTIO_NET_F_MAC,
                 N.VIRTIO_NET_F_STATUS, N.VIRTIO_NET_F_MRG_RXBUF, N.VIRTIO_NET_F_CTRL_VQ,
                 N.VIRTIO_NET_F_CTRL_RX, N.VIRTIO_NET_F_GUEST_ANNOUNCE,
                 N.VIRTIO_NET_F_HOST_TSO4, N.VIRTIO_NET_F_CSUM))


def config(**values: Any) -> bytes:
    base: dict[str, Any] = dict(
        mac=MAC, status=1, max_virtqueue_pairs=1, mtu=1500, speed=0, duplex=0,
        rss_max_key_size=0, rss_max_indirection_table_length=0, supported_hash_types=0,
        supported_tunnel_types=0, xdp_max_insns=0, xdp_max_maps=0, xdp_max_map_mem_kib=0,
        xdp_map_types=0, xdp_abi_version=0, xdp_helpers=[0, 0, 0, 0])
    base.update(values)
    return bytes(virtio_net_config.build(base))


@dataclass
class ScriptedDevice:
    """Answers transport requests like a device would, with knobs to misbehave."""

    offered: int = OFFER
    cfg: bytes = field(default_factory=config)
    queue_max: int = 256
    refuse_features_ok: bool = False
    nonzero_reads_after_reset: int = 0
    status: int = 0
    features: int = 0
    log: list[Request] = field(default_factory=list)
    queues: dict[int, SetupQueue] = field(default_factory=dict)
    kicks: list[int] = field(default_factory=list)

    def answer(self, req: Request) -> Any:
        self.log.append(req)
        if isinstance(req, ReadStatus):
            if self.nonzero_reads_after_reset:
                self.nonzero_reads_after_reset -= 1
                return 0x40
            return self.status
        if isinstance(req, WriteStatus):
            bit = req.value & ~self.status
            if bit & S.FEATURES_OK and self.refuse_features_ok:
                return None
            self.status = req.value
            return None
        if isinstance(req, ReadDeviceFeatures):
            return self.offered
        if isinstance(req, WriteDriverFeatures):
            self.features = req.features
            return None
        if isinstance(req, ReadConfig):
            return self.cfg[req.offset:req.offset + req.length]
        if isinstance(req, ReadQueueMax):
            return self.queue_max
        if isinstance(req, SetupQueue):
            self.queues[req.index] = req
            return None
        if isinstance(req, Kick):
            self.kicks.append(req.queue)
        return None


def make_driver(**kwargs: Any) -> Driver:
    mem = guest_memory(1 << 21)
    kwargs.setdefault("queue_size", 8)
    return Driver(mem, GuestAllocator(mem), **kwargs)


def run(driver: Driver, dev: ScriptedDevice) -> None:
    while (req := driver.next_request()) is not None:
        driver.reply(dev.answer(req))


def up(dev: ScriptedDevice | None = None, **kwargs: Any) -> tuple[Driver, ScriptedDevice]:
    dev = dev or ScriptedDevice()
    driver = make_driver(**kwargs)
    driver.initialize()
    run(driver, dev)
    return driver, dev


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# -- initialization -----------------------------------------------------------------------


def test_init_sequence_step_by_step():
    driver, dev = up()
    assert driver.state is InitState.LIVE
    steps = [(type(r).__name__, getattr(r, "value", getattr(r, "index", None)))
             for r in dev.log]
    accepted = driver.negotiated
    assert steps[:9] == [
        ("WriteStatus", 0), ("ReadStatus", None), ("WriteStatus", 1), ("WriteStatus", 3),
        ("ReadDeviceFeatures", None), ("WriteDriverFeatures", None), ("WriteStatus", 11),
        ("ReadStatus", None), ("ReadConfig", None)]
    assert dev.features == accepted
    # receiveq1, transmitq1, controlq: max size, program, enable; then DRIVER_OK.
    assert steps[9:19] == [
        ("ReadQueueMax", 0), ("SetupQueue", 0), ("EnableQueue", 0),
        ("ReadQueueMax", 1), ("SetupQueue", 1), ("EnableQueue", 1),
        ("ReadQueueMax", 2), ("SetupQueue", 2), ("EnableQueue", 2), ("WriteStatus", 15)]
    # No kick before DRIVER_OK (§3.1.1); the rx refill kicks right after it.
    first_kick = next(i for i, r in enumerate(dev.log) if isinstance(r, Kick))
    assert first_kick == 19 and dev.kicks == [0]
    assert driver.mac == MAC


def test_negotiation_accepts_what_it_wants_and_dependencies_allow():
    driver, _ = up(features=mask_of((F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_MAC,
                                     N.VIRTIO_NET_F_CTRL_RX)))
    (neg,) = of(driver.events(), FeaturesNegotiated)
    # CTRL_RX needs CTRL_VQ, which the driver did not want: it is dropped (§2.2.1).
    assert neg.accepted == mask_of((F.VIRTIO_F_VERSION_1, N.VIRTIO_NET_F_MAC))
    assert "VIRTIO_NET_F_HOST_TSO4" in neg.declined_names
    assert len(driver.queues) == 2  # no control queue


def test_refused_features_ok_sets_failed_and_stops():
    dev = ScriptedDevice(refuse_features_ok=True)
    driver, dev = up(dev)
    assert driver.state is InitState.FAILED
    (failed,) = of(driver.events(), InitFailed)
    assert failed.state == "CHECK_FEATURES_OK" and "refused FEATURES_OK" in failed.reason
    last = dev.log[-1]
    assert isinstance(last, WriteStatus) and last.value == S.ACKNOWLEDGE | S.DRIVER | S.FAILED
    assert not any(isinstance(r, SetupQueue | ReadConfig) for r in dev.log)
    with pytest.raises(LocalProtocolError):
        driver.transmit([b"x" * 60])


def test_extra_features_are_written_even_when_not_offered():
    driver, dev = up(extra_features=1 << N.VIRTIO_NET_F_XDP_OFFLOAD)
    assert dev.features >> N.VIRTIO_NET_F_XDP_OFFLOAD & 1  # the scripted device accepts it
    assert driver.state is InitState.LIVE


def test_device_without_version_1_is_failed():
    driver, dev = up(ScriptedDevice(offered=1 << N.VIRTIO_NET_F_MAC))
    assert driver.state is InitState.FAILED
    assert "VIRTIO_F_VERSION_1" in of(driver.events(), InitFailed)[0].reason
    assert not any(isinstance(r, WriteDriverFeatures) for r in dev.log)


def test_reset_waits_for_status_zero():
    driver, dev = up(ScriptedDevice(nonzero_reads_after_reset=3))
    assert driver.state is InitState.LIVE
    assert sum(isinstance(r, ReadStatus) for r in dev.log[:6]) == 4
    driver, _ = up(ScriptedDevice(nonzero_reads_after_reset=100))
    assert driver.state is InitState.FAILED
    assert "2.4.2" in of(driver.events(), InitFailed)[0].reason


@pytest.mark.parametrize(("dev", "why"), [
    (ScriptedDevice(offered=OFFER | 1 << N.VIRTIO_NET_F_MQ,
                    cfg=config(max_virtqueue_pairs=0)), "max_virtqueue_pairs 0"),
    (ScriptedDevice(queue_max=0), "not available"),
])
def test_bad_device_answers_fail_initialization(dev, why):
    driver, _ = up(dev)
    assert driver.state is InitState.FAILED
    assert why in of(driver.events(), InitFailed)[0].reason


def test_transport_refusal_fails_initialization():
    driver = make_driver()
    driver.initialize()
    dev = ScriptedDevice()
    while (req := driver.next_request()) is not None:
        if isinstance(req, SetupQueue):
            driver.fail_request(RemoteProtocolError("bad queue", "2.7"))
        else:
            driver.reply(dev.answer(req))
    assert driver.state is InitState.FAILED
    assert "bad queue" in of(driver.events(), InitFailed)[0].reason


def test_one_request_at_a_time():
    driver = make_driver()
    driver.initialize()
    driver.next_request()
    with pytest.raises(LocalProtocolError):
        driver.next_request()


# -- datapath over device-side engines ----------------------------------------------------


def device_queue(driver: Driver, dev: ScriptedDevice, index: int) -> SplitDeviceQueue:
    setup = dev.queues[index]
    return SplitDeviceQueue(driver.memory, setup.size, setup.desc, setup.driver, setup.device,
                            event_idx=driver.has(F.VIRTIO_F_EVENT_IDX),
                            indirect=driver.has(F.VIRTIO_F_INDIRECT_DESC))


def rx_hdr(num_buffers: int, gso_type: int = 0) -> bytes:
    return bytes(virtio_net_hdr.build(dict(flags=0, gso_type=gso_type, hdr_len=0, gso_size=0,
                                           csum_start=0, csum_offset=0,
                                           num_buffers=num_buffers)))


def fill(rx: SplitDeviceQueue, parts: list[bytes]) -> None:
    chains = [rx.pop() for _ in parts]
    rx.push_many([(c, c.write(p)) for c, p in zip(chains, parts)])


def test_mergeable_rx_is_reassembled_and_refilled():
    driver, dev = up(rx_buffer_size=64)
    driver.events()
    rx = device_queue(driver, dev, 0)
    frame = bytes(range(100))
    fill(rx, [rx_hdr(2) + frame[:52], frame[52:]])
    driver.interrupt(0)
    events = driver.events()
    (got,) = of(events, FrameReceived)
    assert got.frame == frame and got.buffers == 2
    assert driver.queues[0].free_descriptors == 0  # refilled


@pytest.mark.parametrize(("parts", "why"), [
    ([rx_hdr(3) + b"a" * 52, b"b" * 10], "1 of 3 buffers missing"),
    ([rx_hdr(0) + b"a" * 20], "num_buffers 0"),
    ([rx_hdr(1, gso_type=1) + b"a" * 20], "gso_type 1"),
    ([b"short"], "shorter than the 12-byte header"),
])
def test_bad_rx_buffers_are_device_errors(parts, why):
    driver, dev = up(rx_buffer_size=64)
    driver.events()
    rx = device_queue(driver, dev, 0)
    fill(rx, parts)
    driver.interrupt(0)
    events = driver.events()
    assert not of(events, FrameReceived)
    assert any(why in e.reason for e in of(events, DeviceError))


def test_used_len_beyond_the_buffer_is_not_trusted():
    driver, dev = up(rx_buffer_size=64)
    driver.events()
    rx = device_queue(driver, dev, 0)
    chain = rx.pop()
    chain.write(rx_hdr(1) + b"z" * 40)
    driver.memory.write_u32(dev.queues[0].device + 4, chain.head)
    driver.memory.write_u32(dev.queues[0].device + 8, 5000)
    driver.memory.write_u16(dev.queues[0].device + 2, 1)
    driver.interrupt(0)
    (err,) = of(driver.events(), DeviceError)
    assert "exceeds the 64-byte buffer" in err.reason and err.clause == "2.7.8.1"


def test_non_mergeable_rx_needs_num_buffers_1():
    offered = OFFER & ~(1 << N.VIRTIO_NET_F_MRG_RXBUF)
    driver, dev = up(ScriptedDevice(offered=offered))
    driver.events()
    assert driver.rx_buffer_len >= 1526
    rx = device_queue(driver, dev, 0)
    fill(rx, [rx_hdr(2) + b"a" * 60])
    driver.interrupt(0)
    assert of(driver.events(), DeviceError)[0].clause == "5.1.6.4.1"


def test_transmit_adds_header_and_frame_and_explains_the_kick():
    driver, dev = up()
    driver.events()
    frames = [bytes([i]) * 70 for i in range(3)]
    assert driver.transmit(frames) == 3
    run(driver, dev)
    decision = of(driver.events(), KickDecision)[-1]
    assert decision.sent and "avail idx 0->3" in decision.why
    assert dev.kicks[-1] == 1
    tx = device_queue(driver, dev, 1)
    for f in frames:
        data = tx.pop().read()
        assert data[:12] == bytes(12) and data[12:] == f
    assert driver.transmit([b"y" * 60] * 10) == 1  # 8 descriptors, 2 per chain, 3 in flight


def test_ctrl_command_completes_with_ack_and_result():
    driver, dev = up()
    cmd = driver.ctrl_command(0, 0, {"on": 0}, result_size=4)
    run(driver, dev)
    assert not cmd.done
    ctrl = device_queue(driver, dev, 2)
    chain = ctrl.pop()
    assert chain.read() == b"\x00\x00\x00" and [s.length for s in chain.writable] == [1, 4]
    ctrl.push(chain, chain.write(b"\x00\x01\x02"))
    driver.interrupt(2)
    assert cmd.ok and cmd.result == b"\x01\x02"
    assert of(driver.events(), CtrlCompleted)[0].name == "RX_PROMISC"


@pytest.mark.parametrize(("written", "why"), [(b"", "0 bytes written"),
                                              (b"\x07", "neither VIRTIO_NET_OK")])
def test_ctrl_bad_ack_is_a_device_error(written, why):
    driver, dev = up()
    cmd = driver.ctrl_command(0, 0, {"on": 1})
    ctrl = device_queue(driver, dev, 2)
    chain = ctrl.pop()
    ctrl.push(chain, chain.write(written) if written else 0)
    driver.interrupt(2)
    assert cmd.done and not cmd.ok and why in cmd.error
    assert of(driver.events(), DeviceError)


def test_config_interrupt_with_announce_sends_announce_ack():
    driver, dev = up()
    driver.events()
    dev.cfg = config(status=3)
    driver.config_interrupt()
    run(driver, dev)
    (changed,) = of(driver.events(), ConfigChanged)
    assert changed.announce and changed.link_up
    ctrl = device_queue(driver, dev, 2)
    assert ctrl.pop().read() == b"\x03\x00"


def test_reset_writes_zero_and_frees_the_rings():
    driver, dev = up()
    free_before = driver.allocator.free_bytes  # type: ignore[attr-defined]
    driver.reset()
    run(driver, dev)
    assert dev.status == 0 and driver.queues == {}
    assert driver.allocator.free_bytes > free_before  # type: ignore[attr-defined]
    assert isinstance(dev.log[-1], WriteStatus) and dev.log[-1].value == 0


def test_xdp_capabilities_are_read_from_config_when_negotiated():
    offered = OFFER | 1 << N.VIRTIO_NET_F_XDP_OFFLOAD
    dev = ScriptedDevice(offered=offered, cfg=config(xdp_max_insns=512, xdp_max_maps=3,
                                                     xdp_map_types=0b110, xdp_helpers=[0b1110, 0, 0, 1 << 63],
                                                     xdp_abi_version=1))
    driver, dev = up(dev)
    reads = [(r.offset, r.length) for r in dev.log if isinstance(r, ReadConfig)]
    # only the fields the offer makes exist (virtio 1.3 §2.5.1): the XDP block at 28..80
    assert reads[:len(config_ranges(offered))] == config_ranges(offered)
    assert (28, 52) in reads
    assert driver.xdp_caps is not None and driver.xdp_caps.xdp_max_insns == 512
    assert driver.xdp_caps.helper_ids == {1, 2, 3, 255}  # all four le64 words read
    ready = [e for e in driver.events() if e.kind == "driver_ok"]
    assert "max_insns=512" in ready[0].describe()
    assert driver.xdp_caps.name == "device"  # fields of no profile
    plain, _ = up()
    assert plain.xdp_caps is None


@pytest.mark.parametrize("name", sorted(XDP_PROFILES))
def test_xdp_capabilities_are_named_after_the_profile_they_equal(name: str) -> None:
    """Config space carries fields, not a name: capabilities equal to a profile's are
    named after it, so that a refusal says "(profile rfc2019)", not "(profile device)"."""
    caps = XDP_PROFILES[name]
    dev = ScriptedDevice(offered=OFFER | 1 << N.VIRTIO_NET_F_XDP_OFFLOAD,
                         cfg=config(**caps.to_config()))
    driver, _ = up(dev)
    assert driver.xdp_caps == caps and driver.xdp_caps.name == name
