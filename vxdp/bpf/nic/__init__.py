"""The SmartNIC model's machine: VXME-32, an NFP-like micro-engine (docs/smartnic.md).

`machine` defines it (registers, memories, the instruction word, the NIC's limits),
`regions` tells which memory each pointer addresses, `translate` turns a verified BPF
program into an image or refuses it (`emit` holds the code sequences it places), `sim` runs images, and `engine.NicEngine` is the
`smartnic` engine: translate, then run on the simulator.
"""

from .machine import CODE_STORE, FIRMWARE_HELPERS, LM_STACK, MACHINE, MAX_ELEM_SIZE, Word
from .translate import Image, Span, check_map, translate

__all__ = ["CODE_STORE", "FIRMWARE_HELPERS", "LM_STACK", "MACHINE", "MAX_ELEM_SIZE", "Image",
           "Span", "Word", "check_map", "translate"]
