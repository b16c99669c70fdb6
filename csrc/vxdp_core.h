/*
 * vxdp packet core: the C API that Python reaches through cffi.
 *
 * ubpf-style conventions: opaque handles, every symbol prefixed vxdp_, errors reported as a
 * negative errno return plus text in a caller-supplied buffer, limits as macros.
 *
 * This header is read twice: by the C compiler, and by cffi's cdef (csrc/build_core.py strips
 * preprocessor lines first), so everything between the CDEF markers must be plain
 * declarations that cdef understands.
 */
#ifndef VXDP_CORE_H
#define VXDP_CORE_H

#include <stddef.h>
#include <stdint.h>

#define VXDP_CORE_ABI 1
#define VXDP_ERRBUF_SIZE 256

/* CDEF-BEGIN */
const char *vxdp_core_version(void);
int vxdp_core_abi(void);
/* CDEF-END */

#endif
