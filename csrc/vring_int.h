/*
 * Internals of the split virtqueue engine (vring.c) shared with the datapath (datapath.c);
 * never seen by cdef.
 *
 * Guest memory is a table of regions (guest-physical base, size, host pointer) handed over
 * once at setup; every address a peer gives us goes through vxdp_gmem_xlate().  A queue
 * translates its three ring areas once; a pop validates one chain and describes it as
 * segments (host pointer, length, writability) in the queue's own scratch array, valid
 * until the next pop.
 */
#ifndef VXDP_VRING_INT_H
#define VXDP_VRING_INT_H

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vxdp_core.h"

struct vxdp_gmem_region {
    uint64_t gpa;
    uint64_t size;
    uint8_t *host;
};

struct vxdp_gmem {
    uint32_t n;
    struct vxdp_gmem_region r[VXDP_GMEM_MAX_REGIONS];   /* sorted by gpa, disjoint */
};

/* one validated segment of a popped chain */
struct vxdp_iov {
    uint8_t *p;
    uint64_t gpa;
    uint32_t len;
    uint32_t writable;
};

struct vxdp_vq {
    struct vxdp_gmem *mem;
    uint32_t size;
    uint32_t flags;                  /* VXDP_VQ_F_* */
    bool event_idx, indirect, driver;
    uint8_t *desc, *avail, *used;    /* host pointers of the three areas */
    uint64_t addr[3];
    char name[32];
    /* device side */
    uint16_t last_avail_idx, used_idx, signalled_used;
    uint16_t avail_seen;             /* avail idx as last read: re-read when reached */
    bool prefetch;                   /* warm the buffers of the next chains (vq_prefetch) */
    uint16_t prefetched;             /* avail idx up to which they were */
    bool notifications;
    bool defer_used;                 /* push_int leaves used idx to vxdp_vq_flush_used */
    uint64_t *inflight;              /* per head: writable bytes + 1; 0 = not in flight */
    uint32_t ninflight;
    struct vxdp_iov *iov;            /* scratch of the last pop: at most `size` segments */
    uint32_t niov, nreadable;
    uint64_t readable_len, writable_len;
    uint16_t head;
    uint32_t descriptors;
    /* driver side */
    uint16_t avail_idx, last_used_idx, kicked;
    bool interrupts;
    uint16_t *free_stack;            /* free descriptor ids, top = next to use */
    uint32_t nfree;
    uint16_t *drv_ndesc;             /* per head: descriptors of the chain, 0 = free */
    uint16_t *drv_next;              /* our own copy of the links we wrote */
    uint32_t drv_inflight;
    /* the first rule a peer broke: the queue refuses work until it is rebuilt */
    int broken;                      /* 0, or the negative errno of the refusal */
    char clause[VXDP_VQ_CLAUSE_SIZE];
    char error[VXDP_ERRBUF_SIZE];
};

static inline uint16_t vxdp_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static inline uint32_t vxdp_ld32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t vxdp_ld64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline void vxdp_st16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, 2);
}

static inline void vxdp_st32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void vxdp_st64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

/* A host pointer to [gpa, gpa + len) inside one region, or NULL. */
uint8_t *vxdp_gmem_xlate(const struct vxdp_gmem *m, uint64_t gpa, uint64_t len);

/* Device side without the Python-facing copy: 1 = popped (described in vq->iov), 0 = empty,
 * negative errno = refused (the queue is broken, text in vq->error). */
int vxdp_vq_pop_int(struct vxdp_vq *vq);
/* Roll back the last `n` pops, newest last in heads[] (their chains were never used). */
void vxdp_vq_unpop(struct vxdp_vq *vq, const uint16_t *heads, uint32_t n);
/* Device side: mark chains this side popped used (no checks beyond the in-flight mark). */
void vxdp_vq_push_int(struct vxdp_vq *vq, const uint16_t *heads, const uint32_t *lens,
                      uint32_t n);
void vxdp_vq_flush_used(struct vxdp_vq *vq);
/* Driver side: one chain of `n` buffers, the first `nreadable` device-readable. */
int vxdp_vq_add_int(struct vxdp_vq *vq, const uint64_t *gpa, const uint32_t *len, uint32_t n,
                    uint32_t nreadable);
/* Driver side: next used element; 1 = reaped, 0 = none, negative = broken. */
int vxdp_vq_reap_one(struct vxdp_vq *vq, uint32_t *id, uint32_t *len);

#endif
