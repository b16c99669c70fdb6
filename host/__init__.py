"""The host side: a sans-I/O virtio-net device model (no trio, no sockets, no clocks)."""
