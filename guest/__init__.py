"""The guest side: a sans-I/O virtio-net driver model (no trio, no sockets, no clocks)."""
