"""The virtio specification (1.3 numbering) as data and rules; imports nothing else of vxdp."""
