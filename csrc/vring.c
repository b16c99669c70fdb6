/*
 * Split virtqueues (virtio 1.3 §2.7) in C: both sides, over a guest-memory table.
 *
 * Theory of operation
 *   The guest's memory is a table of regions handed over once (vxdp_gmem_new); a queue
 *   translates its descriptor table, available ring and used ring once (vxdp_vq_new).
 *   The device side pops chains, validating each one, and pushes used elements; the driver
 *   side adds chains, publishes them and reaps used elements.  Index math is 16-bit
 *   free-running: distances are (a - b) & 0xffff, slots are idx & (size - 1).
 *
 *   Hostile peers.  Every rule virtio_spec.split enforces is enforced here, in the same
 *   order and citing the same clause, so the two engines refuse the same rings the same
 *   way (tests/vxdp/test_vring_c.py runs them side by side).  A refusal breaks the queue
 *   (QEMU's virtio_error, the spec's §2.1.2 "needs reset"): it records the errno, the
 *   message and the clause, refuses to pop or reap until it is rebuilt, and still lets
 *   chains already popped be pushed, so nothing acknowledged is lost.  Every queue is its
 *   own object: one broken queue leaves the others serving.
 *
 *   Errors: -EPROTO the peer broke a ring rule, -EFAULT an address outside guest memory
 *   (both break the queue), -EPIPE the queue was already broken, -EINVAL / -ENOSPC our own
 *   misuse (nothing changes).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "vm_int.h"
#include "vring_int.h"

#define DESC_SIZE 16
#define USED_ELEM_SIZE 8
#define F_NEXT 1u
#define F_WRITE 2u
#define F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u
#define USED_F_NO_NOTIFY 1u
#define RING_FLAGS 0
#define RING_IDX 2
#define RING_HDR 4
#define MAX_CHAIN_BYTES (1ull << 32)   /* virtio 1.3 §2.7.5.2 */
/* vq_prefetch: how many published chains ahead of the next pop, and how many bytes of
 * each one's first buffer (a virtio-net header and a small frame) */
#define PREFETCH_CHAINS 32u
#define PREFETCH_BYTES 128u

/* virtio 1.3 Appendix A, virtq_need_event: moving old -> new crossed event. */
int vxdp_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old_idx);
}

/* ---------------------------------------------------------------- guest memory */

int vxdp_gmem_new(struct vxdp_gmem **out, uint32_t n, const uint64_t *gpa,
                  const uint64_t *size, uint8_t *const *host, char *err, size_t errlen)
{
    struct vxdp_gmem *m;

    *out = NULL;
    if (n == 0 || n > VXDP_GMEM_MAX_REGIONS)
        return vxdp_errf(err, errlen, -EINVAL, "%u memory regions, 1 to %u allowed", n,
                         VXDP_GMEM_MAX_REGIONS);
    m = calloc(1, sizeof(*m));
    if (!m)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t j = m->n;
        if (size[i] == 0 || !host[i] || gpa[i] + size[i] < gpa[i]) {
            free(m);
            return vxdp_errf(err, errlen, -EINVAL, "memory region 0x%llx+0x%llx is empty or "
                             "outside the 64-bit space", (unsigned long long)gpa[i],
                             (unsigned long long)size[i]);
        }
        /* insertion sort by gpa */
        while (j > 0 && m->r[j - 1].gpa > gpa[i]) {
            m->r[j] = m->r[j - 1];
            j--;
        }
        m->r[j] = (struct vxdp_gmem_region){ gpa[i], size[i], host[i] };
        m->n++;
    }
    for (uint32_t i = 1; i < m->n; i++) {
        if (m->r[i].gpa < m->r[i - 1].gpa + m->r[i - 1].size) {
            int rc = vxdp_errf(err, errlen, -EINVAL, "memory regions 0x%llx and 0x%llx overlap",
                               (unsigned long long)m->r[i - 1].gpa,
                               (unsigned long long)m->r[i].gpa);
            free(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

void vxdp_gmem_free(struct vxdp_gmem *mem) { free(mem); }

uint8_t *vxdp_gmem_xlate(const struct vxdp_gmem *m, uint64_t gpa, uint64_t len)
{
    if (len > MAX_CHAIN_BYTES || gpa + len < gpa)
        return NULL;
    for (uint32_t i = 0; i < m->n; i++) {
        const struct vxdp_gmem_region *r = &m->r[i];
        uint64_t off;
        if (gpa < r->gpa)
            return NULL;               /* sorted: no later region starts this low */
        off = gpa - r->gpa;
        if (off < r->size || (off == r->size && len == 0)) {
            if (len > r->size - off)
                return NULL;           /* runs off the end (spanning regions is refused) */
            return r->host + off;
        }
    }
    return NULL;
}

/* the text of a refused translation, as virtio_spec.memory words it */
static const char *xlate_why(uint64_t gpa, uint64_t len, char *buf, size_t cap)
{
    if (gpa + len < gpa)
        snprintf(buf, cap, "access 0x%llx+0x%llx wraps the address space",
                 (unsigned long long)gpa, (unsigned long long)len);
    else
        snprintf(buf, cap, "guest address 0x%llx+0x%llx is outside every memory region",
                 (unsigned long long)gpa, (unsigned long long)len);
    return buf;
}

/* ---------------------------------------------------------------- queues */

static uint64_t avail_size(uint32_t q) { return 6 + 2ull * q; }
static uint64_t used_size(uint32_t q) { return 6 + (uint64_t)USED_ELEM_SIZE * q; }

#define USED_EVENT_OFF(vq) (RING_HDR + 2u * (vq)->size)              /* avail.used_event */
#define AVAIL_EVENT_OFF(vq) (RING_HDR + USED_ELEM_SIZE * (vq)->size) /* used.avail_event */

static uint16_t load_idx_acquire(const uint8_t *p)
{
    uint16_t v = __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE);
    return le16toh(v);
}

static void store_idx_release(uint8_t *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELEASE);
}

static int vq_fail(struct vxdp_vq *vq, int code, const char *clause, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record a refusal and break the queue. */
static int vq_fail(struct vxdp_vq *vq, int code, const char *clause, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vq->error, sizeof(vq->error), fmt, ap);
    va_end(ap);
    snprintf(vq->clause, sizeof(vq->clause), "%s", clause);
    vq->broken = code;
    return code;
}

/* The error of the last refusal (or of the queue being broken) for the caller. */
static int vq_report(struct vxdp_vq *vq, int rc, char *err, size_t errlen)
{
    if (rc == -EPIPE)
        return vxdp_errf(err, errlen, rc, "%s is broken until reset: %s", vq->name,
                         vq->error);
    return vxdp_errf(err, errlen, rc, "%s", vq->error);
}

int vxdp_vq_new(struct vxdp_vq **out, struct vxdp_gmem *mem, uint32_t size, uint64_t desc,
                uint64_t avail, uint64_t used, uint32_t flags, uint16_t start_idx,
                const char *name, char *err, size_t errlen)
{
    struct vxdp_vq *vq;
    const char *what[3] = { "descriptor table", "available ring", "used ring" };
    const uint64_t gpa[3] = { desc, avail, used };
    const uint64_t align[3] = { 16, 2, 4 };
    const uint64_t len[3] = { (uint64_t)DESC_SIZE * size, avail_size(size), used_size(size) };
    uint8_t *host[3];
    char why[96];
    const char *label = name && *name ? name : "split queue";

    *out = NULL;
    if (!mem)
        return vxdp_errf(err, errlen, -EINVAL, "%s: no guest memory", label);
    /* virtio 1.3 §2.7: Queue Size is a power of 2, at most 32768 */
    if (size == 0 || size > VXDP_VQ_MAX_SIZE || (size & (size - 1)))
        return vxdp_errf(err, errlen, -EINVAL, "%s: queue size %u is not a power of 2 "
                         "from 1 to %u", label, size, VXDP_VQ_MAX_SIZE);
    if (flags & ~(VXDP_VQ_F_EVENT_IDX | VXDP_VQ_F_INDIRECT | VXDP_VQ_F_DRIVER))
        return vxdp_errf(err, errlen, -EINVAL, "%s: unknown queue flags 0x%x", label, flags);
    for (int i = 0; i < 3; i++) {
        /* virtio 1.3 §2.7.1: each part aligned as the table says */
        if (gpa[i] % align[i])
            return vxdp_errf(err, errlen, -EPROTO, "%s: %s at 0x%llx is not %llu-aligned "
                             "(virtio 1.3 \xc2\xa7" "2.7.1)", label, what[i],
                             (unsigned long long)gpa[i], (unsigned long long)align[i]);
        host[i] = vxdp_gmem_xlate(mem, gpa[i], len[i]);
        if (!host[i])
            return vxdp_errf(err, errlen, -EFAULT, "%s: ring area: %s (virtio 1.3 "
                             "\xc2\xa7" "2.7)", label, xlate_why(gpa[i], len[i], why,
                                                               sizeof(why)));
    }
    vq = calloc(1, sizeof(*vq));
    if (!vq)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    vq->mem = mem;
    vq->size = size;
    vq->flags = flags;
    vq->event_idx = flags & VXDP_VQ_F_EVENT_IDX;
    vq->indirect = flags & VXDP_VQ_F_INDIRECT;
    vq->driver = flags & VXDP_VQ_F_DRIVER;
    vq->desc = host[0];
    vq->avail = host[1];
    vq->used = host[2];
    memcpy(vq->addr, gpa, sizeof(gpa));
    snprintf(vq->name, sizeof(vq->name), "%s", label);
    if (vq->driver) {
        vq->free_stack = malloc(sizeof(uint16_t) * size);
        vq->drv_ndesc = calloc(size, sizeof(uint16_t));
        vq->drv_next = calloc(size, sizeof(uint16_t));
        if (!vq->free_stack || !vq->drv_ndesc || !vq->drv_next)
            goto nomem;
        for (uint32_t i = 0; i < size; i++)
            vq->free_stack[i] = (uint16_t)(size - 1 - i);   /* top of the stack is 0 */
        vq->nfree = size;
        vq->avail_idx = vq->last_used_idx = vq->kicked = start_idx;
        vq->interrupts = true;
        /* the driver owns the rings until it hands them over: flags 0, both idx = start */
        vxdp_st16(vq->avail + RING_FLAGS, 0);
        vxdp_st16(vq->used + RING_FLAGS, 0);
        vxdp_st16(vq->avail + USED_EVENT_OFF(vq), vq->event_idx ? start_idx : 0);
        vxdp_st16(vq->used + AVAIL_EVENT_OFF(vq), 0);
        vxdp_st16(vq->avail + RING_IDX, start_idx);
        vxdp_st16(vq->used + RING_IDX, start_idx);
    } else {
        vq->inflight = calloc(size, sizeof(uint64_t));
        vq->iov = calloc(size, sizeof(struct vxdp_iov));
        if (!vq->inflight || !vq->iov)
            goto nomem;
        vq->last_avail_idx = vq->used_idx = vq->signalled_used = start_idx;
        vq->avail_seen = vq->prefetched = start_idx;
        vq->notifications = true;
    }
    *out = vq;
    return 0;
nomem:
    vxdp_vq_free(vq);
    return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
}

void vxdp_vq_free(struct vxdp_vq *vq)
{
    if (!vq)
        return;
    free(vq->inflight);
    free(vq->iov);
    free(vq->free_stack);
    free(vq->drv_ndesc);
    free(vq->drv_next);
    free(vq);
}

void vxdp_vq_get_state(const struct vxdp_vq *vq, struct vxdp_vq_state *st)
{
    memset(st, 0, sizeof(*st));
    st->last_avail_idx = vq->last_avail_idx;
    st->used_idx = vq->used_idx;
    st->signalled_used = vq->signalled_used;
    st->avail_idx = vq->avail_idx;
    st->last_used_idx = vq->last_used_idx;
    st->kicked = vq->kicked;
    st->notifications = vq->notifications;
    st->interrupts = vq->interrupts;
    st->in_flight = vq->driver ? vq->drv_inflight : vq->ninflight;
    st->broken = vq->broken;
    snprintf(st->clause, sizeof(st->clause), "%s", vq->clause);
    snprintf(st->error, sizeof(st->error), "%s", vq->error);
}

/* 0, or the negative errno of the refusal that broke the queue (its text: get_state). */
int vxdp_vq_broken(const struct vxdp_vq *vq) { return vq->broken; }

/* Hand a queue over (SET_VRING_BASE, migration): only between chains, never with some in
 * flight, whose descriptors the new owner could not know. */
int vxdp_vq_set_state(struct vxdp_vq *vq, const struct vxdp_vq_state *st, char *err,
                      size_t errlen)
{
    uint32_t busy = vq->driver ? vq->drv_inflight : vq->ninflight;
    if (busy)
        return vxdp_errf(err, errlen, -EBUSY, "%s: %u chains in flight; hand a queue over "
                         "between chains", vq->name, busy);
    if (st->broken != 0 && st->broken != -EPROTO && st->broken != -EFAULT)
        return vxdp_errf(err, errlen, -EINVAL, "%s: broken state %d is not -EPROTO or "
                         "-EFAULT", vq->name, st->broken);
    if (vq->driver) {
        /* the driver may be at most a queue's worth ahead of the used ring */
        if ((uint16_t)(st->avail_idx - st->last_used_idx) != 0)
            return vxdp_errf(err, errlen, -EINVAL, "%s: avail idx %u and last used idx %u "
                             "differ with nothing in flight", vq->name, st->avail_idx,
                             st->last_used_idx);
        vq->avail_idx = st->avail_idx;
        vq->last_used_idx = st->last_used_idx;
        vq->kicked = st->kicked;
        vq->interrupts = st->interrupts != 0;
    } else {
        vq->last_avail_idx = vq->avail_seen = vq->prefetched = st->last_avail_idx;
        vq->used_idx = st->used_idx;
        vq->signalled_used = st->signalled_used;
        vq->notifications = st->notifications != 0;
    }
    vq->broken = st->broken;
    snprintf(vq->clause, sizeof(vq->clause), "%s", st->broken ? st->clause : "");
    snprintf(vq->error, sizeof(vq->error), "%s", st->broken ? st->error : "");
    return 0;
}

/* ---------------------------------------------------------------- device side */

static int vq_pending(struct vxdp_vq *vq)
{
    uint16_t avail_idx, count;
    if (vq->broken)
        return -EPIPE;
    /* What the last read of idx announced and is not consumed yet needs no new read:
     * idx shares a cache line with the driver's stores, and each read of it pulls the
     * line over while the driver refills (vhost keeps the same shadow).  Entries below
     * that idx were ordered by the acquire load that saw it. */
    count = (uint16_t)(vq->avail_seen - vq->last_avail_idx);
    if (count && count <= vq->size)
        return count;
    avail_idx = load_idx_acquire(vq->avail + RING_IDX);
    count = (uint16_t)(avail_idx - vq->last_avail_idx);
    if (count > vq->size) {
        /* virtio 1.3 §2.7.6: idx is at most Q ahead of what the device consumed; and
         * §2.7.6.1: "The driver MUST NOT decrement the available idx". */
        if (count >= 0x8000)
            return vq_fail(vq, -EPROTO, "2.7.6.1", "%s: avail idx moved from %u to %u, "
                           "backwards", vq->name, vq->last_avail_idx, avail_idx);
        return vq_fail(vq, -EPROTO, "2.7.6", "%s: avail idx moved from %u to %u, more than "
                       "the queue size %u ahead", vq->name, vq->last_avail_idx, avail_idx,
                       vq->size);
    }
    vq->avail_seen = avail_idx;
    return count;
}

int vxdp_vq_pending(struct vxdp_vq *vq, char *err, size_t errlen)
{
    int rc;
    if (vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: pending() is the device's", vq->name);
    vq->avail_seen = vq->last_avail_idx;   /* a caller asking wants what is there now */
    rc = vq_pending(vq);
    return rc < 0 ? vq_report(vq, rc, err, errlen) : rc;
}

/* One indirect descriptor: the table it names, after the §2.7.5.3.1 rules. */
static int indirect_table(struct vxdp_vq *vq, uint16_t head, const char *where,
                          bool in_table, uint64_t addr, uint32_t len, uint16_t flags,
                          const uint8_t **table, uint32_t *entries)
{
    char why[96];
    /* virtio 1.3 §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag
     * unless the VIRTIO_F_INDIRECT_DESC feature was negotiated", "MUST NOT set the
     * VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor", "MUST NOT set both
     * VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT". */
    if (!vq->indirect)
        return vq_fail(vq, -EPROTO, "2.7.5.3.1", "%s: chain %u: %s: INDIRECT without "
                       "VIRTIO_F_INDIRECT_DESC", vq->name, head, where);
    if (in_table)
        return vq_fail(vq, -EPROTO, "2.7.5.3.1", "%s: chain %u: %s: indirect table inside "
                       "an indirect table", vq->name, head, where);
    if (flags & F_NEXT)
        return vq_fail(vq, -EPROTO, "2.7.5.3.1", "%s: chain %u: %s: INDIRECT combined with "
                       "NEXT", vq->name, head, where);
    /* virtio 1.3 §2.7.5.3: the table is desc[len / 16]; §2.7.5.3.1 caps a chain at Q */
    if (len == 0 || len % DESC_SIZE)
        return vq_fail(vq, -EPROTO, "2.7.5.3.1", "%s: chain %u: %s: indirect table length "
                       "%u is not a non-zero multiple of %u", vq->name, head, where, len,
                       DESC_SIZE);
    if (len / DESC_SIZE > vq->size)
        return vq_fail(vq, -EPROTO, "2.7.5.3.1", "%s: chain %u: %s: indirect table of %u "
                       "descriptors is longer than the queue size %u", vq->name, head,
                       where, len / DESC_SIZE, vq->size);
    /* virtio 1.3 §2.7.5.3.2: the device ignores WRITE on the table's descriptor */
    *table = vxdp_gmem_xlate(vq->mem, addr, len);
    if (!*table)
        return vq_fail(vq, -EFAULT, "2.7.5.3", "%s: chain %u: %s: indirect table: %s",
                       vq->name, head, where, xlate_why(addr, len, why, sizeof(why)));
    *entries = len / DESC_SIZE;
    return 0;
}

/* Walk and validate the chain at `head` into vq->iov. */
static int walk(struct vxdp_vq *vq, uint16_t head, uint32_t slot)
{
    const uint32_t size = vq->size;
    const uint8_t *table = vq->desc;
    uint32_t table_len = size, index = head, count = 0, budget = size, direct = 0;
    const char *budget_clause = "2.7.5.2";
    bool in_table = false, seen_writable = false;
    uint64_t total = 0;
    char where[48], why[96];

    if (head >= size)
        return vq_fail(vq, -EPROTO, "2.7.6", "%s: avail ring slot %u: head %u is not below "
                       "the queue size %u", vq->name, slot, head, size);
    /* virtio 1.3 §2.7.13.1: the driver places buffers into *free* descriptors */
    if (vq->inflight[head])
        return vq_fail(vq, -EPROTO, "2.7.13.1", "%s: avail ring slot %u: head %u is already "
                       "in flight", vq->name, slot, head);
    vq->niov = vq->nreadable = 0;
    vq->readable_len = vq->writable_len = 0;
    for (;;) {
        const uint8_t *d;
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        struct vxdp_iov *iov;

        count++;
        if (count > budget) {
            /* virtio 1.3 §2.7.5.2 (a loop) / §2.7.5.3.1 (direct plus indirect > Q) */
            return vq_fail(vq, -EPROTO, budget_clause, "%s: chain %u is longer than %u "
                           "descriptors (a loop?)", vq->name, head, budget);
        }
        d = table + (size_t)index * DESC_SIZE;
        addr = vxdp_ld64(d);
        len = vxdp_ld32(d + 8);
        flags = vxdp_ld16(d + 12);
        next = vxdp_ld16(d + 14);
        if (!in_table)
            direct++;
        if (flags & F_INDIRECT) {
            int rc;
            snprintf(where, sizeof(where), "%s %u", in_table ? "indirect descriptor" :
                     "descriptor", index);
            rc = indirect_table(vq, head, where, in_table, addr, len, flags, &table,
                                &table_len);
            if (rc)
                return rc;
            /* virtio 1.3 §2.7.5.3.1: the whole chain, table included, is at most Q long;
             * a table walked more times than it has entries loops. */
            count--;
            budget = count + table_len < size ? count + table_len : size;
            budget_clause = "2.7.5.3.1";
            in_table = true;
            index = 0;
            continue;
        }
        /* virtio 1.3 §2.7.4.2: device-writable descriptors come after readable ones */
        if (flags & F_WRITE) {
            seen_writable = true;
        } else if (seen_writable) {
            return vq_fail(vq, -EPROTO, "2.7.4.2", "%s: chain %u: %s %u is device-readable "
                           "after a device-writable descriptor", vq->name, head,
                           in_table ? "indirect descriptor" : "descriptor", index);
        }
        total += len;
        /* virtio 1.3 §2.7.5.2: "Drivers MUST NOT add a descriptor chain longer than 2^32
         * bytes in total" */
        if (total > MAX_CHAIN_BYTES)
            return vq_fail(vq, -EPROTO, "2.7.5.2", "%s: chain %u: %s %u takes the chain "
                           "past 2**32 bytes", vq->name, head,
                           in_table ? "indirect descriptor" : "descriptor", index);
        iov = &vq->iov[vq->niov++];   /* count <= budget <= size bounds niov */
        iov->gpa = addr;
        iov->len = len;
        iov->writable = !!(flags & F_WRITE);
        /* remember where it came from for the address message: index and table kind */
        iov->p = (uint8_t *)(uintptr_t)(((uint64_t)index << 1) | in_table);
        if (!(flags & F_NEXT))
            break;
        if (next >= table_len)
            return vq_fail(vq, -EPROTO, "2.7.5", "%s: chain %u: %s %u: next %u is not below "
                           "the table size %u", vq->name, head,
                           in_table ? "indirect descriptor" : "descriptor", index, next,
                           table_len);
        index = next;
    }
    /* Addresses are translated once the shape of the whole chain passed, so a structural
     * error is reported as such even when addresses are bad too (as virtio_spec.chain). */
    for (uint32_t i = 0; i < vq->niov; i++) {
        struct vxdp_iov *iov = &vq->iov[i];
        uintptr_t tag = (uintptr_t)iov->p;
        iov->p = vxdp_gmem_xlate(vq->mem, iov->gpa, iov->len);
        if (!iov->p)
            /* virtio 1.3 §2.7.5: buffers are guest-physical addresses of the guest */
            return vq_fail(vq, -EFAULT, "2.7.5", "%s: chain %u: %s %u: %s", vq->name, head,
                           (tag & 1) ? "indirect descriptor" : "descriptor",
                           (unsigned)(tag >> 1),
                           xlate_why(iov->gpa, iov->len, why, sizeof(why)));
        if (iov->writable) {
            vq->writable_len += iov->len;
        } else {
            vq->readable_len += iov->len;
            vq->nreadable++;
        }
    }
    vq->head = head;
    vq->descriptors = direct;
    return 0;
}

#if defined(__x86_64__) || defined(__i386__)
/* PREFETCHW (CPUID 0x80000001 ECX bit 8, 3DNowPrefetch) brings a line over exclusive,
 * ready for the stores; PREFETCHT0, the fallback, brings a shared copy whose first store
 * must still invalidate the driver's. */
static bool have_prefetchw(void)
{
    static int have = -1;
    if (have < 0) {
        unsigned a, b, c, d;
        have = __get_cpuid(0x80000001u, &a, &b, &c, &d) && (c >> 8 & 1);
    }
    return have;
}

static inline void prefetch_for_write(const uint8_t *p)
{
    if (have_prefetchw())
        __asm__ volatile("prefetchw %0" : : "m"(*p));
    else
        __builtin_prefetch(p, 1, 3);
}
#else
static inline void prefetch_for_write(const uint8_t *p) { __builtin_prefetch(p, 1, 3); }
#endif

/* Warm the device-writable buffers of the next PREFETCH_CHAINS published chains (the
 * receive queue of a port: vq->prefetch), `count` being published and not popped.
 *
 * A receive buffer was last touched by the driver on another CPU (a DPDK guest reads
 * the header and the frame's first bytes before it frees the buffer), so each store of
 * the device into it waits for its line to come over: ~50 ns between two vCPUs that share
 * a cache complex, ~250 ns between two that do not, and a VM's vCPUs move between the
 * two placements every few seconds.  Those stores held the ones after them, frame after
 * frame: PASS into a DPDK guest fell from ~14.5 to ~5 Mpps whenever the vCPUs were apart.
 * Asked for PREFETCH_CHAINS chains ahead, the lines travel while the device works on the
 * frames before them (~20 and ~9 Mpps; DPDK's vhost prefetches the same way).
 *
 * Hints only: nothing read here is trusted or kept.  Only published entries are read, a
 * head or an address out of range is skipped, and the pop reads and validates everything
 * again; a prefetch never faults.  Transmit queues are left alone: reading ahead there
 * measured a few percent slower and never faster (the driver bounds that direction). */
static void vq_prefetch(struct vxdp_vq *vq, uint16_t count)
{
    const uint32_t mask = vq->size - 1;
    const uint16_t at = vq->last_avail_idx;
    const uint16_t end = (uint16_t)(at + (count < PREFETCH_CHAINS ? count : PREFETCH_CHAINS));

    /* a cursor behind the next pop or past what is published (a hand-over, a rollback)
     * starts again from the next pop */
    if ((uint16_t)(vq->prefetched - at) > count)
        vq->prefetched = at;
    for (; vq->prefetched != end; vq->prefetched++) {
        uint16_t head = vxdp_ld16(vq->avail + RING_HDR + 2 * (vq->prefetched & mask));
        const uint8_t *d, *p;
        uint32_t len;
        uintptr_t line, last;
        if (head >= vq->size)
            continue;
        d = vq->desc + (size_t)head * DESC_SIZE;
        if ((vxdp_ld16(d + 12) & (F_WRITE | F_INDIRECT)) != F_WRITE)
            continue;
        len = vxdp_ld32(d + 8);
        if (len > PREFETCH_BYTES)
            len = PREFETCH_BYTES;
        p = len ? vxdp_gmem_xlate(vq->mem, vxdp_ld64(d), len) : NULL;
        if (!p)
            continue;
        last = (uintptr_t)p + len - 1;
        for (line = (uintptr_t)p & ~(uintptr_t)63; line <= last; line += 64)
            prefetch_for_write((const uint8_t *)line);
    }
}

int vxdp_vq_pop_int(struct vxdp_vq *vq)
{
    int rc = vq_pending(vq);
    uint32_t slot;
    uint16_t head;
    if (rc <= 0)
        return rc;
    if (vq->prefetch)
        vq_prefetch(vq, (uint16_t)rc);
    slot = vq->last_avail_idx & (vq->size - 1);
    head = vxdp_ld16(vq->avail + RING_HDR + 2 * slot);
    rc = walk(vq, head, slot);
    if (rc)
        return rc;
    vq->last_avail_idx++;
    vq->inflight[head] = vq->writable_len + 1;
    vq->ninflight++;
    if (vq->event_idx && vq->notifications)
        /* virtio 1.3 §2.7.10: ask to be kicked when the driver publishes the next one */
        vxdp_st16(vq->used + AVAIL_EVENT_OFF(vq), vq->last_avail_idx);
    return 1;
}

void vxdp_vq_unpop(struct vxdp_vq *vq, const uint16_t *heads, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (vq->inflight[heads[i]]) {
            vq->inflight[heads[i]] = 0;
            vq->ninflight--;
        }
    }
    vq->last_avail_idx -= (uint16_t)n;
    if (vq->event_idx && vq->notifications)
        vxdp_st16(vq->used + AVAIL_EVENT_OFF(vq), vq->last_avail_idx);
}

int vxdp_vq_pop(struct vxdp_vq *vq, struct vxdp_vq_chain *chain, struct vxdp_vq_seg *segs,
                uint32_t cap, char *err, size_t errlen)
{
    int rc;
    if (vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: pop() is the device's", vq->name);
    if (cap < vq->size)
        return vxdp_errf(err, errlen, -EINVAL, "%s: room for %u segments, a chain may have "
                         "%u", vq->name, cap, vq->size);
    rc = vxdp_vq_pop_int(vq);
    if (rc < 0)
        return vq_report(vq, rc, err, errlen);
    if (rc == 0)
        return 0;
    chain->head = vq->head;
    chain->descriptors = vq->descriptors;
    chain->nsegs = vq->niov;
    chain->nreadable = vq->nreadable;
    chain->readable_len = vq->readable_len;
    chain->writable_len = vq->writable_len;
    for (uint32_t i = 0; i < vq->niov; i++)
        segs[i] = (struct vxdp_vq_seg){ vq->iov[i].gpa, vq->iov[i].len, vq->iov[i].writable };
    return 1;
}

/* The datapath's push: heads it popped itself, lengths within their writable part. */
void vxdp_vq_push_int(struct vxdp_vq *vq, const uint16_t *heads, const uint32_t *lens,
                      uint32_t n)
{
    uint16_t idx = vq->used_idx;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = vq->used + RING_HDR + USED_ELEM_SIZE * (idx & (vq->size - 1));
        if (vq->inflight[heads[i]]) {
            vq->inflight[heads[i]] = 0;
            vq->ninflight--;
        }
        vxdp_st32(e, heads[i]);
        vxdp_st32(e + 4, lens[i]);
        idx++;
    }
    vq->used_idx = idx;
    if (!vq->defer_used)
        /* virtio 1.3 §2.7.8.2: elements before idx (release) */
        store_idx_release(vq->used + RING_IDX, idx);
}

/* Publish what push_int left unpublished under defer_used: one used idx store for a whole
 * burst, so the line the driver polls moves once a burst, not once a frame. */
void vxdp_vq_flush_used(struct vxdp_vq *vq)
{
    vq->defer_used = false;
    /* a burst that used nothing (all dropped) leaves the line the driver polls alone */
    if (vxdp_ld16(vq->used + RING_IDX) != vq->used_idx)
        store_idx_release(vq->used + RING_IDX, vq->used_idx);
}

int vxdp_vq_push(struct vxdp_vq *vq, const uint32_t *heads, const uint32_t *lens, uint32_t n,
                 char *err, size_t errlen)
{
    uint16_t idx;
    if (vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: push() is the device's", vq->name);
    for (uint32_t i = 0; i < n; i++) {
        if (heads[i] >= vq->size || !vq->inflight[heads[i]])
            return vxdp_errf(err, errlen, -EINVAL, "%s: push of head %u, not in flight",
                             vq->name, heads[i]);
        for (uint32_t j = 0; j < i; j++)
            if (heads[j] == heads[i])
                return vxdp_errf(err, errlen, -EINVAL, "%s: push of head %u, not in flight",
                                 vq->name, heads[i]);
        /* virtio 1.3 §2.7.5.1 / §2.7.8.2: len counts bytes written to writable buffers */
        if ((uint64_t)lens[i] > vq->inflight[heads[i]] - 1)
            return vxdp_errf(err, errlen, -EINVAL, "%s: push of head %u with %u bytes "
                             "written, its writable part is %llu", vq->name, heads[i],
                             lens[i], (unsigned long long)(vq->inflight[heads[i]] - 1));
    }
    idx = vq->used_idx;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = vq->used + RING_HDR + USED_ELEM_SIZE * (idx & (vq->size - 1));
        vq->inflight[heads[i]] = 0;
        vq->ninflight--;
        vxdp_st32(e, heads[i]);
        vxdp_st32(e + 4, lens[i]);
        idx++;
    }
    /* virtio 1.3 §2.7.8.2: "The device MUST set len prior to updating the used idx"; the
     * release store orders the elements before idx for the driver's acquire load. */
    vq->used_idx = idx;
    store_idx_release(vq->used + RING_IDX, idx);
    return 0;
}

static bool split_should_notify(bool event_idx, uint16_t flags, uint16_t suppress,
                                uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    if (new_idx == old_idx)
        return false;
    if (event_idx)
        /* virtio 1.3 §2.7.7.2 / §2.7.10.1: with EVENT_IDX the event index decides */
        return vxdp_need_event(event, new_idx, old_idx);
    return !(flags & suppress);
}

int vxdp_vq_should_interrupt(struct vxdp_vq *vq)
{
    uint16_t old = vq->signalled_used;
    if (vq->driver)
        return 0;
    vq->signalled_used = vq->used_idx;
    /* the used idx store must be visible before the driver's suppression is read */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* virtio 1.3 §2.7.7.2: NO_INTERRUPT flag, or used_event with EVENT_IDX */
    return split_should_notify(vq->event_idx, vxdp_ld16(vq->avail + RING_FLAGS),
                               AVAIL_F_NO_INTERRUPT, vxdp_ld16(vq->avail + USED_EVENT_OFF(vq)),
                               vq->used_idx, old);
}

int vxdp_vq_enable_notifications(struct vxdp_vq *vq, char *err, size_t errlen)
{
    int rc;
    if (vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: notifications are the device's",
                         vq->name);
    vq->notifications = true;
    if (vq->event_idx)
        vxdp_st16(vq->used + AVAIL_EVENT_OFF(vq), vq->last_avail_idx);
    else
        vxdp_st16(vq->used + RING_FLAGS,
                  vxdp_ld16(vq->used + RING_FLAGS) & (uint16_t)~USED_F_NO_NOTIFY);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    rc = vq_pending(vq);
    return rc < 0 ? vq_report(vq, rc, err, errlen) : rc > 0;
}

void vxdp_vq_disable_notifications(struct vxdp_vq *vq)
{
    if (vq->driver)
        return;
    vq->notifications = false;
    /* with EVENT_IDX only stop moving avail_event forward, as vhost does */
    if (!vq->event_idx)
        vxdp_st16(vq->used + RING_FLAGS, vxdp_ld16(vq->used + RING_FLAGS) | USED_F_NO_NOTIFY);
}

/* ---------------------------------------------------------------- driver side */

int vxdp_vq_add_int(struct vxdp_vq *vq, const uint64_t *gpa, const uint32_t *len, uint32_t n,
                    uint32_t nreadable)
{
    uint64_t total = 0;
    uint16_t ids[64], head;
    if (n == 0 || n > 64 || nreadable > n)
        return -EINVAL;
    for (uint32_t i = 0; i < n; i++)
        total += len[i];
    /* virtio 1.3 §2.7.5.2: "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes
     * in total" */
    if (total > MAX_CHAIN_BYTES)
        return -EINVAL;
    if (n > vq->nfree)
        return -ENOSPC;
    for (uint32_t i = 0; i < n; i++)
        ids[i] = vq->free_stack[--vq->nfree];
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *d = vq->desc + (size_t)ids[i] * DESC_SIZE;
        uint16_t flags = (i >= nreadable ? F_WRITE : 0) | (i + 1 < n ? F_NEXT : 0);
        uint16_t next = i + 1 < n ? ids[i + 1] : 0;
        vxdp_st64(d, gpa[i]);
        vxdp_st32(d + 8, len[i]);
        vxdp_st16(d + 12, flags);
        vxdp_st16(d + 14, next);
        vq->drv_next[ids[i]] = next;
    }
    head = ids[0];
    vq->drv_ndesc[head] = (uint16_t)n;
    vq->drv_inflight++;
    vxdp_st16(vq->avail + RING_HDR + 2 * (vq->avail_idx & (vq->size - 1)), head);
    vq->avail_idx++;
    return head;
}

int vxdp_vq_add(struct vxdp_vq *vq, const struct vxdp_vq_seg *segs, uint32_t n, char *err,
                size_t errlen)
{
    uint64_t gpa[64];
    uint32_t len[64], nreadable = 0;
    int rc;
    if (!vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: add() is the driver's", vq->name);
    if (n == 0 || n > 64)
        return vxdp_errf(err, errlen, -EINVAL, "%s: a chain of %u buffers; 1 to 64 allowed",
                         vq->name, n);
    for (uint32_t i = 0; i < n; i++) {
        if (!segs[i].writable && i != nreadable) {
            /* virtio 1.3 §2.7.4.2: readable buffers first */
            return vxdp_errf(err, errlen, -EINVAL, "%s: buffer %u is readable after a "
                             "writable one", vq->name, i);
        }
        if (!segs[i].writable)
            nreadable++;
        gpa[i] = segs[i].gpa;
        len[i] = segs[i].len;
    }
    rc = vxdp_vq_add_int(vq, gpa, len, n, nreadable);
    if (rc == -ENOSPC)
        return vxdp_errf(err, errlen, rc, "%s: %u descriptors needed, %u free", vq->name, n,
                         vq->nfree);
    if (rc == -EINVAL)
        return vxdp_errf(err, errlen, rc, "%s: buffer lengths break \xc2\xa7" "2.7.5.2",
                         vq->name);
    return rc;
}

int vxdp_vq_publish(struct vxdp_vq *vq)
{
    uint16_t old;
    if (!vq->driver)
        return 0;
    /* virtio 1.3 §2.7.13.3: idx moves after the ring entries are written (release);
     * §2.7.6.1: it only ever moves forward. */
    store_idx_release(vq->avail + RING_IDX, vq->avail_idx);
    old = vq->kicked;
    vq->kicked = vq->avail_idx;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* virtio 1.3 §2.7.10.1 */
    return split_should_notify(vq->event_idx, vxdp_ld16(vq->used + RING_FLAGS),
                               USED_F_NO_NOTIFY, vxdp_ld16(vq->used + AVAIL_EVENT_OFF(vq)),
                               vq->avail_idx, old);
}

int vxdp_vq_reap_one(struct vxdp_vq *vq, uint32_t *id, uint32_t *len)
{
    uint16_t used_idx, count, slot, d;
    const uint8_t *e;
    if (vq->broken)
        return -EPIPE;
    used_idx = load_idx_acquire(vq->used + RING_IDX);
    count = (uint16_t)(used_idx - vq->last_used_idx);
    if (count > vq->drv_inflight)
        /* virtio 1.3 §2.7.8: each used element returns one chain the driver added */
        return vq_fail(vq, -EPROTO, "2.7.8", "%s: used idx moved from %u to %u, past the "
                       "%u chains in flight", vq->name, vq->last_used_idx, used_idx,
                       vq->drv_inflight);
    if (!count)
        return 0;
    slot = vq->last_used_idx & (vq->size - 1);
    e = vq->used + RING_HDR + USED_ELEM_SIZE * slot;
    *id = vxdp_ld32(e);
    *len = vxdp_ld32(e + 4);
    if (*id >= vq->size || !vq->drv_ndesc[*id])
        return vq_fail(vq, -EPROTO, "2.7.8", "%s: used ring slot %u: id %u is not a chain "
                       "in flight", vq->name, slot, *id);
    /* free its descriptors so that the next add takes them in chain order */
    d = (uint16_t)*id;
    {
        uint16_t ids[64];
        uint16_t n = vq->drv_ndesc[d];
        for (uint16_t i = 0; i < n; i++) {
            ids[i] = d;
            d = vq->drv_next[d];
        }
        for (uint16_t i = n; i > 0; i--)
            vq->free_stack[vq->nfree++] = ids[i - 1];
    }
    vq->drv_ndesc[*id] = 0;
    vq->drv_inflight--;
    vq->last_used_idx++;
    if (vq->event_idx && vq->interrupts)
        /* virtio 1.3 §2.7.7: interrupt us when the next element is used */
        vxdp_st16(vq->avail + USED_EVENT_OFF(vq), vq->last_used_idx);
    return 1;
}

int vxdp_vq_reap(struct vxdp_vq *vq, uint32_t *ids, uint32_t *lens, uint32_t cap, char *err,
                 size_t errlen)
{
    uint32_t n = 0;
    if (!vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: reap() is the driver's", vq->name);
    while (n < cap) {
        int rc = vxdp_vq_reap_one(vq, &ids[n], &lens[n]);
        if (rc < 0) {
            if (n)
                return (int)n;   /* the good ones first; the next call reports the break */
            return vq_report(vq, rc, err, errlen);
        }
        if (rc == 0)
            break;
        n++;
    }
    return (int)n;
}

int vxdp_vq_enable_interrupts(struct vxdp_vq *vq, char *err, size_t errlen)
{
    uint16_t used_idx, count;
    if (!vq->driver)
        return vxdp_errf(err, errlen, -EINVAL, "%s: interrupts are the driver's", vq->name);
    vq->interrupts = true;
    if (vq->event_idx)
        vxdp_st16(vq->avail + USED_EVENT_OFF(vq), vq->last_used_idx);
    vxdp_st16(vq->avail + RING_FLAGS,
              vxdp_ld16(vq->avail + RING_FLAGS) & (uint16_t)~AVAIL_F_NO_INTERRUPT);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (vq->broken)
        return vq_report(vq, -EPIPE, err, errlen);
    used_idx = load_idx_acquire(vq->used + RING_IDX);
    count = (uint16_t)(used_idx - vq->last_used_idx);
    if (count > vq->drv_inflight)
        return vq_report(vq, vq_fail(vq, -EPROTO, "2.7.8", "%s: used idx moved from %u to "
                                     "%u, past the %u chains in flight", vq->name,
                                     vq->last_used_idx, used_idx, vq->drv_inflight),
                         err, errlen);
    return count > 0;
}

void vxdp_vq_disable_interrupts(struct vxdp_vq *vq)
{
    if (!vq->driver)
        return;
    vq->interrupts = false;
    if (vq->event_idx)
        /* virtio 1.3 §2.7.7.1: with EVENT_IDX the driver MUST set flags to 0; park
         * used_event a full lap behind instead */
        vxdp_st16(vq->avail + USED_EVENT_OFF(vq), (uint16_t)(vq->last_used_idx - 1));
    else
        vxdp_st16(vq->avail + RING_FLAGS,
                  vxdp_ld16(vq->avail + RING_FLAGS) | AVAIL_F_NO_INTERRUPT);
}
