/*
 * Runs: the raw harness run and XDP batches in the frame of BPF_PROG_TEST_RUN, and the
 * helpers that move the frame's pointers (net/core/filter.c).
 *
 * The XDP frame is the one bpf_prog_test_run_xdp (net/bpf/test_run.c) builds: a zeroed
 * page, XDP_PACKET_HEADROOM (256) bytes of headroom, the packet, and room up to
 * PAGE_SIZE - SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) to grow into; packets of
 * ETH_HLEN to PAGE_SIZE - headroom - tailroom bytes (bpf_test_init); data_meta starts at
 * data (xdp_prepare_buff(..., meta_valid = true)).  The output is data_meta..data_end, as
 * bpf_prog_test_run_xdp passes xdp.data_meta to bpf_test_finish.
 */
#include <stdlib.h>
#include <time.h>

#include "vm_int.h"

#define XDP_ABORTED 0
#define XDP_REDIRECT 4
#define BPF_F_BROADCAST (1u << 3)
#define BPF_F_EXCLUDE_INGRESS (1u << 4)

uint32_t vxdp_xdp_max_out(void) { return VXDP_XDP_MAX_OUT; }

static void run_init(struct vxdp_run *r, struct vxdp_prog *prog, struct vxdp_env *env,
                     char *err, size_t errlen)
{
    r->prog = prog;
    r->env = env;
    r->cpu = env ? env->cpu : 0;
    r->fault = 0;
    r->err = err;
    r->errlen = errlen;
    r->nresv = 0;
    r->tail_calls = 0;
    r->redirect = -1;
    r->jit_prog_id = 0;
    r->jit_ready = 0;
    memset(r->stack, 0, sizeof(r->stack));
}

int vxdp_run_raw(struct vxdp_prog *prog, struct vxdp_env *env, void *mem, size_t mem_len,
                 uint64_t *retval, char *err, size_t errlen)
{
    struct vxdp_run *r;
    int rc;

    if (prog->mode != VXDP_MODE_RAW)
        return vxdp_errf(err, errlen, -EINVAL, "program was not loaded for raw runs");
    r = calloc(1, sizeof(*r));
    if (!r)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    run_init(r, prog, env, err, errlen);
    r->pkt_lo = (uintptr_t)mem;
    r->pkt_hi = (uintptr_t)mem + (mem ? mem_len : 0);
    rc = vxdp_run_prog(r, mem_len ? (uint64_t)(uintptr_t)mem : 0, mem_len, retval);
    free(r);
    return rc;
}

static void set_packet_region(struct vxdp_run *r)
{
    r->pkt_lo = (uintptr_t)r->data_meta;
    r->pkt_hi = (uintptr_t)r->data_end;
}

/* The packets of `b` through `prog` on `r` and `frame`, on the engine `jit` says: the
 * program that starts every run is the batch's, so which engine runs it is decided once
 * per batch, and each engine's loop is compiled without the other's code in it. */
static inline __attribute__((always_inline)) int
xdp_batch(struct vxdp_run *r, struct vxdp_prog *prog, uint8_t *frame,
          struct vxdp_xdp_batch *b, char *err, size_t errlen, bool jit)
{
    size_t in_off = 0, out_off = 0;
    int rc = 0;

    for (uint32_t i = 0; i < b->count; i++) {
        uint32_t len = b->pkt_len[i];
        uint64_t ret;
        if (len < VXDP_ETH_HLEN || len > VXDP_XDP_MAX_DATA) {
            rc = vxdp_errf(err, errlen, -EINVAL, "packet %u: %u bytes, an XDP test run takes "
                           "%u to %u", i, len, VXDP_ETH_HLEN, VXDP_XDP_MAX_DATA);
            break;
        }
        r->data = frame + VXDP_XDP_HEADROOM;
        r->head_low = r->data;
        vxdp_memcpy(r->data, b->pkts + in_off, len);
        in_off += len;
        r->data_end = r->data + len;
        r->data_meta = r->data;
        set_packet_region(r);
        r->prog = prog;
        r->redirect = -1;
        r->tail_calls = 0;
        r->fault = 0;
        rc = vxdp_run_prog_on(r, (uint64_t)(uintptr_t)r->ctx_md, 0, &ret, jit);
        if (rc) {
            /* the interpreter wrote the message; name the packet too */
            char tmp[VXDP_ERRBUF_SIZE];
            snprintf(tmp, sizeof(tmp), "%s", err ? err : "");
            vxdp_errf(err, errlen, rc, "packet %u: %s", i, tmp);
            break;
        }
        b->retval[i] = (uint32_t)ret;
        b->redirect[i] = r->redirect;
        b->out_off[i] = (uint32_t)out_off;
        /* bpf_prog_test_run_xdp hands back data_meta..data_end (bpf_test_finish) */
        b->out_len[i] = (uint32_t)(r->data_end - r->data_meta);
        if (b->out_len[i] > b->out_cap - out_off) {
            rc = vxdp_errf(err, errlen, -ENOSPC, "packet %u: output buffer too small", i);
            break;
        }
        vxdp_memcpy(b->out + out_off, r->data_meta, b->out_len[i]);
        out_off += b->out_len[i];
        /* bpf_test_init hands every run a zeroed buffer.  Only what a program could see
         * needs zeroing again: the headroom it exposed with adjust_head/adjust_meta (and
         * possibly wrote).  Bytes past data_end stay stale, but adjust_tail zeroes what it
         * grows over, so no program sees them. */
        if (r->head_low < frame + VXDP_XDP_HEADROOM)
            memset(r->head_low, 0, (size_t)(frame + VXDP_XDP_HEADROOM - r->head_low));
        b->done = i + 1;
    }
    return rc;
}

int vxdp_run_xdp(struct vxdp_prog *prog, struct vxdp_env *env, struct vxdp_xdp_batch *b,
                 char *err, size_t errlen)
{
    struct vxdp_run *r;
    uint8_t *frame;
    int rc;

    b->done = 0;
    if (prog->mode != VXDP_MODE_XDP)
        return vxdp_errf(err, errlen, -EINVAL, "program was not loaded for XDP runs");
    if (!env)
        return vxdp_errf(err, errlen, -EINVAL, "XDP runs need an environment");
    r = malloc(sizeof(*r));
    frame = aligned_alloc(64, VXDP_PAGE_SIZE);
    if (!r || !frame) {
        free(r);
        free(frame);
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    }
    run_init(r, prog, env, err, errlen);
    r->frame_sz = VXDP_PAGE_SIZE;
    r->ingress_ifindex = b->ingress_ifindex;
    r->rx_queue_index = b->rx_queue_index;
    r->hard_start = frame;
    memset(frame, 0, VXDP_PAGE_SIZE);

    if (prog->jit)
        rc = xdp_batch(r, prog, frame, b, err, errlen, true);
    else
        rc = xdp_batch(r, prog, frame, b, err, errlen, false);
    free(frame);
    free(r);
    return rc;
}

/* The time the runs took on this thread's CPU, which leaves out what the scheduler gave
 * to other threads meanwhile, as BPF_PROG_TEST_RUN's own timer leaves out its reschedules
 * (bpf_test_timer_continue): on a shared machine both then time the work alone. */
int vxdp_run_xdp_repeat(struct vxdp_prog *prog, struct vxdp_env *env,
                        struct vxdp_xdp_batch *b, uint32_t repeat, uint64_t *cpu_ns,
                        char *err, size_t errlen)
{
    struct timespec t0, t1;
    int rc = 0;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0))
        return vxdp_errf(err, errlen, -errno, "no thread CPU clock");
    for (uint32_t i = 0; i < repeat && !rc; i++)
        rc = vxdp_run_xdp(prog, env, b, err, errlen);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    *cpu_ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec -
              (uint64_t)t0.tv_nsec;
    return rc;
}

/* ---------------------------------------------------------------- frame helpers */

bool vxdp_is_ctx(struct vxdp_run *r, uint64_t a1, const char *helper)
{
    if (a1 == (uint64_t)(uintptr_t)r->ctx_md)
        return true;
    vxdp_run_fail(r, -EINVAL, "%s at pc %u: r1 is not the context", helper, r->pc);
    return false;
}

/* bpf_xdp_adjust_head: data may move between the end of the xdp_frame (plus the metadata,
 * which moves along) and data_end - ETH_HLEN. */
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_head)
{
    (void)a3, (void)a4, (void)a5;
    if (!vxdp_is_ctx(r, a1, "xdp_adjust_head"))
        return 0;
    int32_t off = (int32_t)a2;
    intptr_t metalen = r->data - r->data_meta;
    intptr_t lo = (intptr_t)r->hard_start + VXDP_XDP_FRAME_STRUCT + metalen;
    intptr_t data = (intptr_t)r->data + off;
    if (data < lo || data > (intptr_t)r->data_end - VXDP_ETH_HLEN)
        return (uint64_t)-EINVAL;
    if (metalen)
        memmove(r->data_meta + off, r->data_meta, (size_t)metalen);
    r->data_meta += off;
    r->data += off;
    if (r->data_meta < r->head_low)
        r->head_low = r->data_meta;
    set_packet_region(r);
    return 0;
}

/* bpf_xdp_adjust_meta: meta between the end of the xdp_frame and data, its length a
 * multiple of 4 and at most 255, the u8 skb_shared_info.meta_len (xdp_metalen_invalid:
 * -EACCES; older kernels capped it at 32, the kernel this was checked on takes 36). */
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_meta)
{
    (void)a3, (void)a4, (void)a5;
    if (!vxdp_is_ctx(r, a1, "xdp_adjust_meta"))
        return 0;
    int32_t off = (int32_t)a2;
    intptr_t meta = (intptr_t)r->data_meta + off;
    intptr_t metalen = (intptr_t)r->data - meta;
    if (meta < (intptr_t)r->hard_start + VXDP_XDP_FRAME_STRUCT || meta > (intptr_t)r->data)
        return (uint64_t)-EINVAL;
    if ((metalen & 3) || metalen > VXDP_XDP_META_MAX)
        return (uint64_t)-EACCES;
    r->data_meta += off;
    if (r->data_meta < r->head_low)
        r->head_low = r->data_meta;
    set_packet_region(r);
    return 0;
}

/* bpf_xdp_adjust_tail: data_end between data + ETH_HLEN and the hard end of the frame
 * (frame_sz minus the skb_shared_info tailroom); grown bytes are zeroed. */
VXDP_HELPER_DECL(vxdp_h_xdp_adjust_tail)
{
    (void)a3, (void)a4, (void)a5;
    if (!vxdp_is_ctx(r, a1, "xdp_adjust_tail"))
        return 0;
    int32_t off = (int32_t)a2;
    intptr_t hard_end = (intptr_t)r->hard_start + r->frame_sz - VXDP_XDP_TAILROOM;
    intptr_t end = (intptr_t)r->data_end + off;
    if (end > hard_end || end < (intptr_t)r->data + VXDP_ETH_HLEN)
        return (uint64_t)-EINVAL;
    if (off > 0)
        memset(r->data_end, 0, (size_t)off);
    r->data_end += off;
    set_packet_region(r);
    return 0;
}

VXDP_HELPER_DECL(vxdp_h_xdp_get_buff_len)
{
    (void)a2, (void)a3, (void)a4, (void)a5;
    if (!vxdp_is_ctx(r, a1, "xdp_get_buff_len"))
        return 0;
    return (uint64_t)(r->data_end - r->data);
}

/* bpf_xdp_pointer: offset and len at most 0xffff (-EFAULT), inside the buffer (-EINVAL). */
static int xdp_bytes(struct vxdp_run *r, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                     bool store)
{
    uint32_t off = (uint32_t)a2, len = (uint32_t)a4;
    uint8_t *buf;
    if (!vxdp_is_ctx(r, a1, store ? "xdp_store_bytes" : "xdp_load_bytes"))
        return 0;
    buf = vxdp_mem_check(r, a3, len, !store);
    if (!buf)
        return 0;
    if (off > 0xffff || len > 0xffff)
        return -EFAULT;
    if ((uint64_t)off + len > (uint64_t)(r->data_end - r->data))
        return -EINVAL;
    if (store)
        memmove(r->data + off, buf, len);
    else
        memmove(buf, r->data + off, len);
    return 0;
}

VXDP_HELPER_DECL(vxdp_h_xdp_load_bytes)
{
    (void)a5;
    return (uint64_t)(int64_t)xdp_bytes(r, a1, a2, a3, a4, false);
}

VXDP_HELPER_DECL(vxdp_h_xdp_store_bytes)
{
    (void)a5;
    return (uint64_t)(int64_t)xdp_bytes(r, a1, a2, a3, a4, true);
}

/* bpf_xdp_redirect: any flag makes it XDP_ABORTED; else the target is recorded. */
VXDP_HELPER_DECL(vxdp_h_redirect)
{
    (void)a3, (void)a4, (void)a5;
    if (a2)
        return XDP_ABORTED;
    r->redirect = (uint32_t)a1;
    return XDP_REDIRECT;
}

/* __bpf_xdp_redirect_map: the low two flag bits are the action when the key is absent;
 * BPF_F_BROADCAST needs no key and is recorded as target 0 (every port). */
VXDP_HELPER_DECL(vxdp_h_redirect_map)
{
    (void)a4, (void)a5;
    const struct vxdp_prog *p = r->prog;
    struct vxdp_map *m = NULL;
    uint32_t ifindex, type;
    for (uint32_t i = 0; i < p->nmaps; i++)
        if ((uint64_t)(uintptr_t)p->maps[i] == a1)
            m = p->maps[i];
    type = m ? vxdp_map_type(m) : 0;
    if (type != VXDP_MAP_DEVMAP && type != VXDP_MAP_DEVMAP_HASH && type != VXDP_MAP_XSKMAP) {
        vxdp_run_fail(r, -EINVAL, "redirect_map at pc %u: r1 is not a devmap or xskmap of "
                      "this program", r->pc);
        return 0;
    }
    if (type == VXDP_MAP_XSKMAP) {
        /* xsk_map_redirect: flags other than the action bits are XDP_ABORTED; a socket
         * is no device, so no ifindex is recorded (vxdp has no AF_XDP sockets) */
        uint32_t queue;
        if (a3 & ~(uint64_t)3)
            return XDP_ABORTED;
        return vxdp_map_xsk_get(m, (uint32_t)a2, &queue) ? a3 & 3 : XDP_REDIRECT;
    }
    if (a3 & ~(uint64_t)(3 | BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS))
        return XDP_ABORTED;
    if (a3 & BPF_F_BROADCAST) {
        r->redirect = 0;
        return XDP_REDIRECT;
    }
    if (vxdp_map_devmap_get(m, (uint32_t)a2, &ifindex))
        return a3 & 3;
    r->redirect = ifindex;
    return XDP_REDIRECT;
}
