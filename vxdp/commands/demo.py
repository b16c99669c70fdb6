"""`vxdp demo`: a virtio-net guest driver and host device negotiating and moving frames.

    vxdp demo [-j] [--out DIR] [--profile P] [--queue-size N] [--frames N]
              [--path-frames N] [--runs N]

The run: the driver initializes the
device (virtio 1.3 §3.1.1) and negotiates features; the guest transmits three frames; the
guest turns promiscuous mode off and installs a MAC table over the control queue; the
host network then sends four frames to the guest: one for its MAC, one for a MAC nobody
asked for (the filter drops it), a broadcast, and one larger than a receive buffer (it
spans several mergeable buffers when VIRTIO_NET_F_MRG_RXBUF is negotiated).

Then the offload itself (docs/offload-spec.md), when the device profile offers
VIRTIO_NET_F_XDP_OFFLOAD (`host`, the default; `rfc2019`; `smartnic`): the guest creates
the program's map on the device (MAP CREATE), sends the program (PROG SET_OFFLOAD; the
device verifies it and answers with its log), the host network sends four frames, the
host drops one and bounces one before the guest sees them, and the guest reads the
program's counters back over the control queue (MAP LOOKUP).

Then the comparison (`vxdp.runtime.compare`): a host and a guest runtime talk vhost-user
over a socketpair (memfd memory, eventfd kicks and calls) and the same seeded traffic
(`--frames`, 0 skips this part) crosses them once per placement: offloaded over the
control queue (C datapath, then the Python device model), attached by the host's
operator instead, and in the guest's driver (driver mode).  The table shows, per
placement, the action counts, frames that reached the guest and the wire, the offload's
setup time, and the time, Mpps and microseconds per 32-frame burst measured in that run.

Then the two paths of the RFC's review thread (`vxdp.runtime.paths`): the same program
offloaded over the control queue (libbpf -> virtio_net -> control virtqueue -> device)
and over agents (libbpf -> guest agent -> host agent -> device, the path Jakub Kicinski
asked about), `--runs` times each, alternating: setup latency (DRIVER_OK to the program
running on the host), map-update round trips per second from the guest, forwarding Mpps
over `--path-frames` frames (0 skips this part; the same datapath either way), as min,
median and max; then what each path survives: a host without an agent, a guest driver
without VIRTIO_NET_F_XDP_OFFLOAD, a host restart (time to run again, map contents), and
a live migration of the guest's back-end to another host, `--runs` times (downtime and
frames lost, the program, a map entry and the counters found on the destination; the
agent path's channel re-bound to the destination's host agent), and once to a host that
runs no agent.

Every line printed is an entry of the pair's trace, produced by the models as they run:
status writes, features by name, queue addresses, each chain added, popped and used,
each kick and interrupt with the reason it was sent or suppressed, the filter's verdicts,
and a summary computed from the run.  `-j` prints the same entries as JSON lines;
`--out DIR` writes `trace.txt`, `trace.jsonl` and `summary.json` there, and the paths'
plots `paths.png` and `survival.png` (matplotlib, `vxdp.plots`).

Exit status 0 when the run went as the device profile predicts (every transmitted frame
on the wire, the foreign frame dropped only where the filter was set, every other frame
received intact, every placement and every run of both paths reproducing the program's
reference action counts), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vxdp.errors import UsageError

if TYPE_CHECKING:
    from vxdp.pair import Pair

NAME = "demo"
HELP = ("a guest offloads its XDP program to the host over the control queue; the same "
        "offload over agents; placements and paths compared")

GUEST_IP, PEER_IP = "10.0.0.1", "10.0.0.2"
PEER_MAC = "02:00:00:00:00:02"
STRANGER_MAC = "02:00:00:00:00:77"
MULTICAST_MAC = "01:00:5e:00:00:fb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from host import PROFILES
    parser.add_argument("-j", "--json", action="store_true",
                        help="print the trace as JSON lines")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="write trace.txt, trace.jsonl and summary.json into DIR")
    parser.add_argument("--profile", default="host", choices=sorted(PROFILES),
                        help="device profile (default: host, which offers the offload)")
    parser.add_argument("--queue-size", type=int, default=8, metavar="N",
                        help="virtqueue size the driver asks for (default: 8)")
    parser.add_argument("--frames", type=int, default=512, metavar="N",
                        help="frames per placement in the offload comparison (default: "
                             "512; 0 skips it)")
    parser.add_argument("--path-frames", type=int, default=16384, metavar="N",
                        help="frames per run in the control queue vs agents comparison "
                             "(default: 16384; 0 skips it)")
    parser.add_argument("--runs", type=int, default=3, metavar="N",
                        help="runs of each path in that comparison (default: 3)")


def run_demo(profile: str = "host", queue_size: int = 8, frames: int = 512,
             path_frames: int = 16384, runs: int = 3) -> tuple[Pair, dict[str, Any]]:
    """Run the demo; returns the pair (with its trace) and the summary."""
    from virtio_spec.ctrl import VirtioNetCtrlClass, VirtioNetCtrlMac, VirtioNetCtrlRx
    from virtio_spec.features import VirtioNetFeature, describe
    from vxdp.packets import icmp_packet, mac, tcp_packet, udp_packet
    from vxdp.pair import Pair
    if not 1 <= queue_size <= 32768:
        raise UsageError(f"--queue-size {queue_size} is outside 1..32768")
    if not 0 <= frames <= 1_000_000:
        raise UsageError(f"--frames {frames} is outside 0..1000000")
    if not 0 <= path_frames <= 1_000_000:
        raise UsageError(f"--path-frames {path_frames} is outside 0..1000000")
    if not 1 <= runs <= 100:
        raise UsageError(f"--runs {runs} is outside 1..100")
    pair = Pair.create(profile, queue_size=queue_size, rx_buffer_size=256)
    trace = pair.trace
    trace.section(f"feature negotiation, device profile {profile!r} (virtio 1.3 \u00a73.1.1)")
    live = pair.negotiate()
    summary: dict[str, Any] = {"profile": profile, "driver_ok": live,
                               "negotiated": describe(pair.driver.negotiated)}
    if not live:
        return _finish(pair, summary, ok=False)
    guest_mac = ":".join(f"{b:02x}" for b in pair.driver.mac)

    trace.section("transmit: guest -> host wire")
    outbound = [
        udp_packet(GUEST_IP, PEER_IP, 5353, 53, b"vxdp demo query", src_mac=guest_mac,
                   dst_mac=PEER_MAC),
        icmp_packet(GUEST_IP, PEER_IP, 7, 1, b"ping" * 8, src_mac=guest_mac, dst_mac=PEER_MAC),
        tcp_packet(GUEST_IP, PEER_IP, 40000, 80, b"GET / HTTP/1.0\r\n\r\n", flags="PA",
                   src_mac=guest_mac, dst_mac=PEER_MAC),
    ]
    wire = pair.send_from_guest(outbound)

    filtering = pair.driver.has(VirtioNetFeature.VIRTIO_NET_F_CTRL_RX)
    ctrl_results: list[dict[str, Any]] = []
    if filtering:
        trace.section("control queue: promiscuous off, MAC table (virtio 1.3 \u00a75.1.6.5)")
        commands = [
            (VirtioNetCtrlClass.VIRTIO_NET_CTRL_RX, VirtioNetCtrlRx.VIRTIO_NET_CTRL_RX_PROMISC,
             {"on": 0}),
            (VirtioNetCtrlClass.VIRTIO_NET_CTRL_MAC,
             VirtioNetCtrlMac.VIRTIO_NET_CTRL_MAC_TABLE_SET,
             {"unicast": {"macs": [mac(PEER_MAC)]}, "multicast": {"macs": [mac(MULTICAST_MAC)]}}),
        ]
        for cls, command, body in commands:
            cmd = pair.ctrl(cls, command, body)
            ctrl_results.append({"name": cmd.name, "ack": cmd.ack, "ok": cmd.ok})
    else:
        trace.add("demo", "note", "VIRTIO_NET_F_CTRL_RX not negotiated: no filter to set, "
                                  "the device stays promiscuous")

    trace.section("receive: host wire -> guest (filter, mergeable buffers)")
    inbound = [
        udp_packet(PEER_IP, GUEST_IP, 53, 5353, b"vxdp demo answer", src_mac=PEER_MAC,
                   dst_mac=guest_mac),
        udp_packet(PEER_IP, GUEST_IP, 53, 5353, b"not for you", src_mac=PEER_MAC,
                   dst_mac=STRANGER_MAC),
        udp_packet(PEER_IP, "10.0.0.255", 67, 68, b"broadcast", src_mac=PEER_MAC,
                   dst_mac="ff:ff:ff:ff:ff:ff"),
        udp_packet(PEER_IP, GUEST_IP, 9000, 9001, bytes(range(256)) * 3, src_mac=PEER_MAC,
                   dst_mac=guest_mac),
    ]
    received = pair.deliver_to_guest(inbound)

    expected_rx = [f for i, f in enumerate(inbound) if not (filtering and i == 1)]
    drops = [e.text for e in trace.of_kind("drop")]
    rx_buffers = [e.data["buffers"] for e in trace.of_kind("rx_frame")]
    stats = pair.device.stats
    summary.update({
        "guest_mac": guest_mac,
        "tx": {"frames": len(wire), "bytes": sum(map(len, wire)),
               "intact": wire == outbound},
        "ctrl": ctrl_results,
        "rx": {"offered": len(inbound), "received": len(received),
               "bytes": sum(map(len, received)), "buffers_per_frame": rx_buffers,
               "intact": received == expected_rx},
        "dropped": drops,
        "kicks": pair.kicks,
        "interrupts": {"sent": stats["interrupts"],
                       "suppressed": stats["interrupts_suppressed"]},
    })
    ok = (wire == outbound and received == expected_rx
          and all(c["ok"] for c in ctrl_results))
    ok = _offload(pair, summary, guest_mac) and ok
    if frames:
        ok = _placements(pair, summary, profile, frames) and ok
    if path_frames:
        ok = _paths(pair, summary, profile, path_frames, runs) and ok
    return _finish(pair, summary, ok=ok)


def _offload(pair: Pair, summary: dict[str, Any], guest_mac: str) -> bool:
    """The guest offloads the demo program over the control queue; the host runs it."""
    from guest.offload import OffloadClient, OffloadError
    from vxdp.bpf.program import XdpAction
    from vxdp.packets import icmp_packet, tcp_packet, udp_packet
    from vxdp.runtime.compare import DEMO_MAP, demo_program
    trace = pair.trace
    trace.section("XDP offload over the control queue (docs/offload-spec.md)")
    caps = pair.driver.xdp_caps
    if caps is None:
        trace.add("demo", "note", "the device does not offer VIRTIO_NET_F_XDP_OFFLOAD: "
                                  "nothing to offload (try --profile host)")
        summary["offload"] = None
        return True
    program = demo_program()
    client = OffloadClient(caps)
    trace.add("demo", "note", f"program {program.name} ({program.insn_count} insns, map "
                              f"{DEMO_MAP.name}): checked against the capabilities the device "
                              f"advertises ({caps.xdp_max_insns} insns, "
                              f"{len(caps.helper_ids)} helpers, map types "
                              f"{sorted(caps.map_type_ids)}), then its map and itself handed "
                              f"over", {"program": program.name})
    try:
        offloaded = pair.offload(client.load(program))
    except OffloadError as exc:
        trace.add("demo", "note", f"offload refused: {exc}", {"error": str(exc)})
        summary["offload"] = {"error": str(exc)}
        return False
    for line in offloaded.log.strip().splitlines():
        trace.add("host", "offload_log", f"verifier: {line}")
    trace.add("wire", "note", "four frames from the host network: UDP to an odd port "
                              "(DROP), UDP to an even port (PASS), TCP (TX), ICMP (PASS)")
    frames = [udp_packet(PEER_IP, GUEST_IP, 53, 5355, b"odd", src_mac=PEER_MAC,
                         dst_mac=guest_mac),
              udp_packet(PEER_IP, GUEST_IP, 53, 5354, b"even", src_mac=PEER_MAC,
                         dst_mac=guest_mac),
              tcp_packet(PEER_IP, GUEST_IP, 80, 40000, b"syn", flags="S", src_mac=PEER_MAC,
                         dst_mac=guest_mac),
              icmp_packet(PEER_IP, GUEST_IP, 8, 1, b"ping", src_mac=PEER_MAC,
                          dst_mac=guest_mac)]
    wire_before = len(pair.wire)
    received = pair.deliver_to_guest(frames)
    bounced = pair.device.stats["offload_tx"]
    counts = {}
    for action in XdpAction:
        value = pair.offload(client.lookup(offloaded.handles[0],
                                           int(action).to_bytes(4, "little")))
        counts[action.name.lower()] = int.from_bytes(value or bytes(8), "little")
    trace.add("guest", "note", "counters read over the control queue (MAP LOOKUP): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()), {"counters": counts})
    info = pair.offload(client.query())
    summary["offload"] = {
        "program": program.name, "map_handle": offloaded.handles[0],
        "received": len(received), "dropped_on_host": pair.device.stats["offload_drop"],
        "bounced": bounced, "counters": counts,
        "query": info.to_json() if info is not None else None}
    bounced_frames = pair.wire[wire_before:]
    ok = (received == [frames[1], frames[3]] and counts["drop"] == 1
          and counts["tx"] == 1 and counts["pass"] == 2 and info is not None
          and len(bounced_frames) == 1 and bounced_frames[0][:6] == frames[2][6:12])
    pair.offload(client.unload())
    return ok


def _placements(pair: Pair, summary: dict[str, Any], profile: str, frames: int) -> bool:
    """The offload comparison: one program on the host, then in the guest."""
    from vxdp.runtime.compare import compare, demo_program, table
    trace = pair.trace
    trace.section("offloaded vs host-attached vs driver mode, over vhost-user")
    program = demo_program()
    trace.add("demo", "note", f"program {program.name} ({program.insn_count} insns): IPv4 UDP "
                              f"to an odd port DROP, IPv4 TCP TX (MACs swapped), else PASS; "
                              f"{frames} seeded frames per placement from the host's wire",
              {"program": program.name, "insns": program.insn_count, "frames": frames})
    expected, rows = compare(program, count=frames, profile=profile)
    trace.add("demo", "note", "reference (the program alone, no virtio): " + ", ".join(
        f"{k} {v}" for k, v in expected.items()), {"reference": expected})
    lines = table(rows)
    trace.add("demo", "placement_table", lines[0], {"header": True})
    for line, row in zip(lines[1:], rows):
        trace.add("demo", "placement", line, row.to_json())
    agree = all(r.complete and r.actions == expected and r.in_guest == expected["pass"]
                and r.wire_tx == expected["tx"] for r in rows)
    summary["placement"] = {"reference": expected, "rows": [r.to_json() for r in rows],
                            "agree": agree}
    return agree


def _paths(pair: Pair, summary: dict[str, Any], profile: str, frames: int,
           runs: int) -> bool:
    """The RFC review's two paths, measured: control queue vs agents."""
    from vxdp.runtime.compare import demo_program
    from vxdp.runtime.offload import VIAS
    from vxdp.runtime.paths import compare_paths
    trace = pair.trace
    trace.section("the two paths of the RFC's review: control queue vs agents")
    if pair.driver.xdp_caps is None:
        trace.add("demo", "note", "the device does not offer VIRTIO_NET_F_XDP_OFFLOAD: "
                                  "no offload to carry (try --profile host)")
        return True
    program = demo_program()
    trace.add("demo", "note", f"program {program.name} offloaded over the control queue "
                              f"(virtio_net -> controlq -> device) and over agents (guest "
                              f"agent -> host agent -> the same device offload), {runs} runs "
                              f"each, alternating; {frames} frames a run",
              {"program": program.name, "runs": runs, "frames": frames})
    report = compare_paths(program, count=frames, runs=runs, profile=profile)
    lines = report.table()
    trace.add("demo", "paths_table", lines[0], {"header": True})
    for line, via in zip(lines[1:], VIAS):
        trace.add("demo", "paths", line, {"via": via, **{
            k: asdict(v) for k, v in report.spread(via).items()}})
    mpps = {via: report.spread(via)["mpps"] for via in VIAS}
    overlap = max(m.low for m in mpps.values()) <= min(m.high for m in mpps.values())
    trace.add("demo", "note", "forwarding runs on the same datapath either way (the C "
                              "port's offload slot): median Mpps " + ", ".join(
                                  f"{via} {m.median:.3f}" for via, m in mpps.items())
              + ("; the ranges overlap: no difference measured" if overlap else
                 "; the ranges do not overlap in this run"), {"mpps_overlap": overlap})
    width = max((len(s.scenario) for s in report.survival), default=0)
    for s in report.survival:
        trace.add("demo", "survival", f"{s.scenario:<{width}} {s.via:<9} {s.text()}",
                  s.to_json())
    summary["paths"] = report.to_json()
    return report.agree


def _finish(pair: Pair, summary: dict[str, Any], *, ok: bool) -> tuple[Pair, dict[str, Any]]:
    summary["ok"] = ok
    trace = pair.trace
    trace.section("summary")
    trace.add("demo", "summary", f"negotiated {len(summary['negotiated'])} features: "
                                 f"{', '.join(summary['negotiated']) or 'none'}",
              {"negotiated": summary["negotiated"]})
    if "tx" in summary:
        tx, rx = summary["tx"], summary["rx"]
        trace.add("demo", "summary", f"tx: {tx['frames']} frames, {tx['bytes']} bytes on the "
                                     f"wire, intact: {tx['intact']}", {"tx": tx})
        trace.add("demo", "summary", f"rx: {rx['received']} of {rx['offered']} frames "
                                     f"received, {rx['bytes']} bytes, buffers per frame "
                                     f"{rx['buffers_per_frame']}, intact: {rx['intact']}",
                  {"rx": rx})
        for c in summary["ctrl"]:
            trace.add("demo", "summary", f"ctrl {c['name']}: "
                                         f"{'OK' if c['ok'] else 'ERR'}", {"ctrl": c})
        for d in summary["dropped"]:
            trace.add("demo", "summary", f"dropped: {d}", {"dropped": d})
        irq = summary["interrupts"]
        trace.add("demo", "summary", f"{summary['kicks']} kicks sent; interrupts "
                                     f"{irq['sent']} sent, {irq['suppressed']} suppressed",
                  {"kicks": summary["kicks"], "interrupts": irq})
    off = summary.get("offload")
    if off and "error" not in off:
        c = off["counters"]
        trace.add("demo", "summary", f"offload: {off['received']} of 4 frames reached the "
                                     f"guest, {off['dropped_on_host']} dropped and "
                                     f"{off['bounced']} bounced on the host; counters read "
                                     f"back over the control queue: drop {c['drop']}, pass "
                                     f"{c['pass']}, tx {c['tx']}", {"offload": off})
    if "placement" in summary:
        p = summary["placement"]
        fastest = max(p["rows"], key=lambda r: r["mpps"])
        trace.add("demo", "summary", f"placements agree with the reference: {p['agree']}; "
                                     f"fastest here: {fastest['placement']} "
                                     f"({fastest['datapath']}) at {fastest['mpps']} Mpps",
                  {"placement_agree": p["agree"]})
    if "paths" in summary:
        p = summary["paths"]
        med = {via: {k: v["median"] for k, v in spread.items()}
               for via, spread in p["spread"].items()}
        trace.add("demo", "summary", "paths agree with the reference: "
                  f"{p['agree']}; medians: " + "; ".join(
                      f"{via} setup {m['setup_ms']:.1f} ms, {m['updates_per_s']:.0f} "
                      f"updates/s, {m['mpps']:.3f} Mpps" for via, m in med.items()),
                  {"paths_agree": p["agree"]})
    trace.add("demo", "summary", "result: " + ("as expected" if ok else "NOT as expected"),
              {"ok": ok})
    return pair, summary


def run(args: argparse.Namespace) -> int:
    pair, summary = run_demo(args.profile, args.queue_size, args.frames, args.path_frames,
                             args.runs)
    text, lines = pair.trace.text(), pair.trace.json_lines()
    sys.stdout.write(lines if args.json else text)
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "trace.txt").write_text(text)
            (args.out / "trace.jsonl").write_text(lines)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            if "paths" in summary:
                from vxdp.plots import write_plots  # matplotlib: only when plots are asked
                write_plots(summary["paths"], args.out)
        except OSError as exc:
            raise UsageError(f"cannot write to {args.out}: {exc.strerror or exc}") from None
    return 0 if summary["ok"] else 1
