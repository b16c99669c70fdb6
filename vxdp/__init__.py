"""vxdp: a reference emulator for offloading XDP programs through virtio-net.

Layers (see docs/architecture.md): `vxdp.bpf` is the BPF machine, `virtio_spec` the spec as
data, `guest` and `host` the sans-I/O driver and device, and the rest of `vxdp` the edge.
"""

__version__ = "0.1.0"
