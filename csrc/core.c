/* Version and ABI of the packet core; the smoke test calls these. */
#include "vxdp_core.h"

const char *vxdp_core_version(void) { return "vxdp-core 0.1"; }

int vxdp_core_abi(void) { return VXDP_CORE_ABI; }
