/*
 * The datapath: a host port (the device side of one guest) and a guest port (the driver
 * side, with driver-mode XDP), moving frames in bursts.
 *
 * Theory of operation
 *   A host switch (vxdp_switch) names its uplink, the wire, by an ifindex and knows its
 *   ports by theirs: REDIRECT targets (devmap values) resolve through it.  A port owns
 *   one receive queue and one transmit queue of a guest (split rings of vring.c over the
 *   guest's memory) and, optionally, an offloaded XDP program with its environment.
 *
 *   Two program slots a port: the host-attached program (the operator's, `xdp`) and the
 *   program the guest offloaded over its control queue (`offload`).  Host rx burst: each
 *   wire frame goes through the host-attached program, if one is attached, in place on
 *   a host frame with XDP_PACKET_HEADROOM (as xdp.c frames it), then:
 *     DROP       counted;
 *     ABORTED    dropped and counted (also unknown actions and runs the core stopped);
 *     TX         back out on the wire (the out burst);
 *     PASS       into the guest (guest_in);
 *     REDIRECT   to the port the target ifindex names (into its guest, guest_in), to the
 *                wire when it names the uplink, else dropped and counted.
 *   Into the guest (guest_in): the offloaded program, if any, on its own frame; its
 *   DROP and ABORTED end there, TX goes back out of the port the frame came in (the
 *   wire), REDIRECT as above but one hop only (a frame another port redirected here is
 *   dropped when this program redirects it again: no loops), and PASS writes a
 *   virtio_net_hdr and the frame into the guest's rx chains, spanning several with
 *   VIRTIO_NET_F_MRG_RXBUF (num_buffers set, virtio 1.3 §5.1.6.3.2, §5.1.6.4), all of
 *   them used together.
 *   Without buffers the frame is dropped and counted (rx_no_buffer), as vhost does; with
 *   MRG_RXBUF chains taken for a frame that did not fit are held for the next one.
 *   Host tx burst: guest tx chains become wire frames once their header is checked
 *   (§5.1.6.2.1); the chains are returned with len 0.
 *
 *   Guest port: reaps used rx buffers, reassembles merged frames, runs the guest's own
 *   program (driver mode, the fallback when nothing is offloaded): DROP, TX (re-posted on
 *   the guest's tx ring), PASS (handed up in a burst); then refills the rx ring.
 *
 *   One call moves one burst; every counter lives in C and is read as a struct.  A ring
 *   a hostile peer broke is recorded by its queue (vring.c); the port drops what would
 *   have used it and keeps serving its other queue.
 */
#include <stdlib.h>

#include "vm_int.h"
#include "vring_int.h"
#include "datapath_int.h"

#define XDP_ABORTED 0
#define XDP_DROP 1
#define XDP_PASS 2
#define XDP_TX 3
#define XDP_REDIRECT 4

/* virtio-net feature bits (virtio 1.3 §5.1.3) */
#define NET_F_CSUM 0
#define NET_F_MTU 3
#define NET_F_HOST_TSO4 11
#define NET_F_HOST_TSO6 12
#define NET_F_HOST_ECN 13
#define NET_F_HOST_UFO 14
#define NET_F_MRG_RXBUF 15
#define F_VERSION_1 32
#define NET_F_HOST_USO 56
#define NET_F_HASH_REPORT 57
#define HAS(features, bit) (((features) >> (bit)) & 1)

/* struct virtio_net_hdr (virtio 1.3 §5.1.6) */
#define HDR_F_NEEDS_CSUM 1
#define HDR_F_DATA_VALID 2
#define HDR_F_RSC_INFO 4
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_UDP 3
#define GSO_TCPV6 4
#define GSO_UDP_L4 5
#define GSO_ECN 0x80
#define HDR_NUM_BUFFERS 10
#define HDR_MAX 20
#define ETH_P_8021Q 0x8100
/* Transmit chains a burst returns to the driver at a time (used elements and used idx).
 * Returned once per burst, a burst of 256 chains kept a driver whose ring has 256 entries
 * (DPDK's virtio PMD) from queueing anything while the device worked, and the device
 * then found the ring dry while the driver refilled.  In groups of 32 (DPDK's vhost
 * dequeues bursts of 32) both can work at once (docs/bench.md, seventh set). */
#define DP_TX_USED_BATCH 32

/* ---------------------------------------------------------------- XDP runs */


static int xdp_attach(struct dp_xdp *x, struct vxdp_prog *prog, struct vxdp_env *env,
                      char *err, size_t errlen)
{
    if (!prog) {
        x->prog = NULL;
        x->env = NULL;
        return 0;
    }
    if (prog->mode != VXDP_MODE_XDP)
        return vxdp_errf(err, errlen, -EINVAL, "program was not loaded for XDP runs");
    if (!env)
        return vxdp_errf(err, errlen, -EINVAL, "XDP runs need an environment");
    if (!x->run) {
        x->run = aligned_alloc(64, (sizeof(struct vxdp_run) + 63) & ~(size_t)63);
        x->frame = aligned_alloc(64, VXDP_PAGE_SIZE);
        if (!x->run || !x->frame) {
            free(x->run);
            free(x->frame);
            x->run = NULL;
            x->frame = NULL;
            return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
        }
        memset(x->run, 0, sizeof(*x->run));
        memset(x->frame, 0, VXDP_PAGE_SIZE);
    }
    x->prog = prog;
    x->env = env;
    return 0;
}

static void xdp_free(struct dp_xdp *x)
{
    free(x->run);
    free(x->frame);
}

/* What xdp.c's run_init does once per batch. */
static void xdp_burst_begin(struct dp_xdp *x, uint32_t ifindex, uint32_t rxq)
{
    struct vxdp_run *r = x->run;
    r->prog = x->prog;
    r->env = x->env;
    r->cpu = x->env->cpu;
    r->fault = 0;
    r->err = x->fault;
    r->errlen = sizeof(x->fault);
    r->nresv = 0;
    r->tail_calls = 0;
    r->redirect = -1;
    r->frame_sz = VXDP_PAGE_SIZE;
    r->ingress_ifindex = ifindex;
    r->rx_queue_index = rxq;
    r->jit_ready = 0;   /* the compiled context takes the new ifindex and queue */
    r->hard_start = x->frame;
    memset(r->stack, 0, sizeof(r->stack));
}

/* One run over a copy of `pkt` (ETH_HLEN..VXDP_XDP_MAX_DATA bytes).  Returns the action;
 * a run the core stopped returns XDP_ABORTED with *fault set. */
static uint32_t xdp_run(struct dp_xdp *x, const uint8_t *pkt, uint32_t len, bool *fault)
{
    struct vxdp_run *r = x->run;
    uint64_t ret;
    int rc;

    r->data = x->frame + VXDP_XDP_HEADROOM;
    r->head_low = r->data;
    vxdp_memcpy(r->data, pkt, len);
    r->data_end = r->data + len;
    r->data_meta = r->data;
    r->pkt_lo = (uintptr_t)r->data_meta;
    r->pkt_hi = (uintptr_t)r->data_end;
    r->prog = x->prog;
    r->redirect = -1;
    r->tail_calls = 0;
    r->fault = 0;
    rc = vxdp_run_prog(r, (uint64_t)(uintptr_t)r->ctx_md, 0, &ret);
    *fault = rc != 0;
    return rc ? XDP_ABORTED : (uint32_t)ret;
}

/* After the frame was consumed: zero the headroom the program exposed (xdp.c's rule). */
static void xdp_scrub(struct dp_xdp *x)
{
    struct vxdp_run *r = x->run;
    uint8_t *top = x->frame + VXDP_XDP_HEADROOM;
    if (r->head_low < top)
        memset(r->head_low, 0, (size_t)(top - r->head_low));
}

static size_t copy_fault(const struct dp_xdp *x, char *buf, size_t cap)
{
    size_t n = strnlen(x->fault, sizeof(x->fault));
    if (!cap)
        return n;
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, x->fault, n);
    buf[n] = 0;
    return n;
}

/* ---------------------------------------------------------------- bursts */

int dp_burst_check(const struct vxdp_burst *b, bool out, const char *what, char *err,
                       size_t errlen)
{
    if (!b || (!b->buf && b->cap) || !b->len)
        return vxdp_errf(err, errlen, -EINVAL, "%s burst without buffers", what);
    if (out) {
        if (b->count > b->max || b->used > b->cap)
            return vxdp_errf(err, errlen, -EINVAL, "%s burst: %u frames / %zu bytes already "
                             "in %u slots / %zu bytes", what, b->count, b->used, b->max,
                             b->cap);
        return 0;
    }
    {
        uint64_t total = 0;
        for (uint32_t i = 0; i < b->count; i++)
            total += b->len[i];
        if (total > b->cap)
            return vxdp_errf(err, errlen, -EINVAL, "%s burst: frames add up to %llu bytes, "
                             "the buffer has %zu", what, (unsigned long long)total, b->cap);
    }
    return 0;
}

bool dp_burst_put(struct vxdp_burst *b, const uint8_t *data, uint32_t len)
{
    if (b->count >= b->max || len > b->cap - b->used)
        return false;
    memcpy(b->buf + b->used, data, len);
    b->len[b->count++] = len;
    b->used += len;
    return true;
}

static uint32_t hdr_len_of(uint64_t features)
{
    /* virtio 1.3 §5.1.6: 12 bytes with VERSION_1 or MRG_RXBUF, 20 with HASH_REPORT */
    if (HAS(features, NET_F_HASH_REPORT))
        return 20;
    if (HAS(features, F_VERSION_1) || HAS(features, NET_F_MRG_RXBUF))
        return 12;
    return 10;
}

/* ---------------------------------------------------------------- host switch and ports */

int vxdp_switch_new(struct vxdp_switch **out, uint32_t wire_ifindex, char *err, size_t errlen)
{
    struct vxdp_switch *sw = calloc(1, sizeof(*sw));
    *out = NULL;
    if (!sw)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    if (wire_ifindex == 0) {
        free(sw);
        return vxdp_errf(err, errlen, -EINVAL, "ifindex 0 names no device");
    }
    sw->wire_ifindex = wire_ifindex;
    sw->refs = 1;
    *out = sw;
    return 0;
}

void dp_switch_release(struct vxdp_switch *sw)
{
    if (sw && --sw->refs == 0) {
        free(sw->stage);
        free(sw);
    }
}

void vxdp_switch_free(struct vxdp_switch *sw) { dp_switch_release(sw); }

struct vxdp_port *dp_switch_find(const struct vxdp_switch *sw, uint32_t ifindex)
{
    for (uint32_t i = 0; i < sw->nports; i++)
        if (sw->ports[i]->ifindex == ifindex)
            return sw->ports[i];
    return NULL;
}

int vxdp_port_new(struct vxdp_port **out, struct vxdp_switch *sw, uint32_t ifindex,
                  struct vxdp_vq *rx, struct vxdp_vq *tx, uint64_t features, uint32_t mtu,
                  char *err, size_t errlen)
{
    struct vxdp_port *p;

    *out = NULL;
    if (!sw)
        return vxdp_errf(err, errlen, -EINVAL, "a port needs a switch");
    if (ifindex == 0 || ifindex == sw->wire_ifindex || dp_switch_find(sw, ifindex))
        return vxdp_errf(err, errlen, -EEXIST, "ifindex %u is 0, the wire's or taken",
                         ifindex);
    if (sw->nports == VXDP_SWITCH_MAX_PORTS)
        return vxdp_errf(err, errlen, -ENOSPC, "the switch has %u ports already",
                         VXDP_SWITCH_MAX_PORTS);
    if ((rx && rx->driver) || (tx && tx->driver))
        return vxdp_errf(err, errlen, -EINVAL, "a host port takes device-side queues");
    p = calloc(1, sizeof(*p));
    if (!p)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    p->sw = sw;
    sw->refs++;
    sw->ports[sw->nports++] = p;
    p->ifindex = ifindex;
    p->rx = rx;
    p->tx = tx;
    if (rx)
        rx->prefetch = true;   /* its buffers are written here: warm them (vring.c) */
    p->features = features;
    p->hdr_len = hdr_len_of(features);
    p->mrg = HAS(features, NET_F_MRG_RXBUF);
    p->mtu = HAS(features, NET_F_MTU) ? mtu : 0;
    *out = p;
    return 0;
}

void vxdp_port_free(struct vxdp_port *p)
{
    struct vxdp_switch *sw;
    if (!p)
        return;
    sw = p->sw;
    for (uint32_t i = 0; i < sw->nports; i++) {
        if (sw->ports[i] == p) {
            sw->ports[i] = sw->ports[--sw->nports];
            break;
        }
    }
    dp_switch_forget(sw, p);
    dp_switch_release(sw);
    xdp_free(&p->xdp);
    xdp_free(&p->offload);
    free(p);
}

int vxdp_port_attach(struct vxdp_port *p, struct vxdp_prog *prog, struct vxdp_env *env,
                     char *err, size_t errlen)
{
    return xdp_attach(&p->xdp, prog, env, err, errlen);
}

int vxdp_port_attach_offload(struct vxdp_port *p, struct vxdp_prog *prog,
                             struct vxdp_env *env, char *err, size_t errlen)
{
    return xdp_attach(&p->offload, prog, env, err, errlen);
}

size_t vxdp_port_offload_fault(const struct vxdp_port *p, char *buf, size_t cap)
{
    return copy_fault(&p->offload, buf, cap);
}

void vxdp_port_get_stats(const struct vxdp_port *p, struct vxdp_port_stats *st)
{
    *st = p->st;
}

size_t vxdp_port_last_fault(const struct vxdp_port *p, char *buf, size_t cap)
{
    return copy_fault(&p->xdp, buf, cap);
}

/* Push the held chains unused (hand-over, reset): they carry nothing yet. */
static void release_held(struct vxdp_port *p)
{
    for (uint32_t i = 0; i < p->held; i++)
        p->written[i] = 0;
    if (p->held)
        vxdp_vq_push_int(p->rx, p->head, p->written, p->held);
    p->held = p->nseg = 0;
    p->room = 0;
}

int vxdp_port_release(struct vxdp_port *p)
{
    int n = (int)p->held;
    if (p->rx && p->held)
        release_held(p);
    return n;
}

static bool vlan_tagged(const uint8_t *frame, uint32_t len)
{
    return len >= VXDP_ETH_HLEN && frame[12] == (ETH_P_8021Q >> 8) &&
           frame[13] == (ETH_P_8021Q & 0xff);
}

/* Take one more rx chain for the frame being placed.  1 = taken, 0 = none available,
 * -1 = the frame cannot be placed (counted), -2 = the ring is broken. */
static int take_chain(struct vxdp_port *p)
{
    struct vxdp_vq *vq = p->rx;
    for (;;) {
        uint32_t nw;
        int rc = vxdp_vq_pop_int(vq);
        if (rc < 0)
            return -2;
        if (rc == 0) {
            if (vq->notifications)
                return 0;
            /* The ring ran dry with kicks off: ask for the driver's next kick, then look
             * once more, or a buffer posted in between is never announced (virtio 1.3
             * §2.7.10; vhost-net's handle_rx does the same). */
            rc = vxdp_vq_enable_notifications(vq, NULL, 0);
            if (rc < 0)
                return -2;
            if (rc == 0)
                return 0;
            vxdp_vq_disable_notifications(vq);
            continue;
        }
        nw = vq->niov - vq->nreadable;
        if (vq->writable_len < p->hdr_len) {
            /* virtio 1.3 §5.1.6.3.1: every receive buffer holds at least the header; a
             * smaller one is returned unused and the frame tries the next. */
            uint32_t zero = 0;
            vxdp_vq_push_int(vq, &vq->head, &zero, 1);
            p->st.drop_small_buffer++;
            continue;
        }
        if (p->held == VXDP_RX_MAX_BUFS || nw > VXDP_RX_MAX_SEGS - p->nseg) {
            /* more buffers or segments than one frame may use: give them all back */
            uint32_t zero = 0;
            vxdp_vq_push_int(vq, &vq->head, &zero, 1);
            release_held(p);
            p->st.drop_fragmented++;
            return -1;
        }
        for (uint32_t i = vq->nreadable; i < vq->niov; i++)
            p->seg[p->nseg++] = (struct rx_seg){ vq->iov[i].p, vq->iov[i].len };
        p->head[p->held] = vq->head;
        p->cap[p->held] = vq->writable_len;
        p->segs_of[p->held] = nw;
        p->held++;
        p->room += vq->writable_len;
        return 1;
    }
}

/* Copy `n` bytes of `src` into the held segments from byte `at` on. */
static void scatter(struct vxdp_port *p, uint64_t at, const uint8_t *src, uint32_t n)
{
    for (uint32_t i = 0; i < p->nseg && n; i++) {
        struct rx_seg *s = &p->seg[i];
        uint32_t k;
        if (at >= s->len) {
            at -= s->len;
            continue;
        }
        k = s->len - (uint32_t)at < n ? s->len - (uint32_t)at : n;
        memcpy(s->p + at, src, k);
        src += k;
        n -= k;
        at = 0;
    }
}

/* PASS: a frame into this port's guest (virtio 1.3 §5.1.6.3, §5.1.6.4). */
static void deliver(struct vxdp_port *p, const uint8_t *frame, uint32_t len)
{
    uint8_t hdr[HDR_MAX] = { 0 };
    uint64_t need = (uint64_t)p->hdr_len + len, left;
    struct vxdp_vq *vq = p->rx;

    if (p->mtu && len > p->mtu + VXDP_ETH_HLEN + (vlan_tagged(frame, len) ? 4 : 0)) {
        /* virtio 1.3 §5.1.4.1: with VIRTIO_NET_F_MTU the device MUST NOT pass received
         * packets larger than mtu plus the Ethernet header */
        p->st.drop_mtu++;
        return;
    }
    if (!vq) {
        p->st.drop_no_buffer++;
        return;
    }
    if (vq->broken) {
        p->st.drop_ring_broken++;
        return;
    }
    while (p->held == 0 || (p->mrg && p->room < need)) {
        int rc = take_chain(p);
        if (rc == 0) {
            p->st.drop_no_buffer++;   /* held chains wait for the next frame */
            return;
        }
        if (rc == -1)
            return;
        if (rc == -2) {
            p->st.drop_ring_broken++;
            return;
        }
    }
    if (p->room < need) {
        /* without MRG_RXBUF one chain holds header and frame (§5.1.6.3.1) */
        release_held(p);
        p->st.drop_small_buffer++;
        return;
    }
    /* num_buffers: how many buffers the frame spans; 1 without MRG_RXBUF (§5.1.6.4.1) */
    if (p->hdr_len >= 12)
        vxdp_st16(hdr + HDR_NUM_BUFFERS, 0);
    left = need;
    {
        uint32_t used = 0;
        for (uint32_t i = 0; i < p->held && left; i++) {
            p->written[i] = (uint32_t)(p->cap[i] < left ? p->cap[i] : left);
            left -= p->written[i];
            used++;
        }
        if (p->hdr_len >= 12)
            vxdp_st16(hdr + HDR_NUM_BUFFERS, (uint16_t)used);
        scatter(p, 0, hdr, p->hdr_len);
        scatter(p, p->hdr_len, frame, len);
        /* virtio 1.3 §5.1.6.4: all buffers of one frame become used together */
        vxdp_vq_push_int(vq, p->head, p->written, used);
        p->st.guest_buffers += used;
        /* chains taken beyond what the frame needed stay held for the next one */
        if (used < p->held) {
            uint32_t skip = 0;
            for (uint32_t i = 0; i < used; i++)
                skip += p->segs_of[i];
            memmove(p->head, p->head + used, (p->held - used) * sizeof(p->head[0]));
            memmove(p->cap, p->cap + used, (p->held - used) * sizeof(p->cap[0]));
            memmove(p->segs_of, p->segs_of + used, (p->held - used) * sizeof(p->segs_of[0]));
            memmove(p->seg, p->seg + skip, (p->nseg - skip) * sizeof(p->seg[0]));
            p->held -= used;
            p->nseg -= skip;
            p->room = 0;
            for (uint32_t i = 0; i < p->held; i++)
                p->room += p->cap[i];
        } else {
            p->held = p->nseg = 0;
            p->room = 0;
        }
    }
    p->st.guest_packets++;
    p->st.guest_bytes += len;
}

static void to_wire(struct vxdp_port *p, struct vxdp_burst *wire, const uint8_t *data,
                    uint32_t len)
{
    if (!dp_burst_put(wire, data, len)) {
        p->st.drop_wire_full++;
        return;
    }
    p->st.wire_packets++;
    p->st.wire_bytes += len;
}

/* Into this port's guest: its offloaded program, then PASS into its receive queue (see
 * the top of the file).  `hop` is 0 for a frame from the wire or this port's host
 * program, 1 for a frame another port redirected here. */
static void guest_in(struct vxdp_port *p, struct vxdp_burst *wire, const uint8_t *pkt,
                     uint32_t len, int hop)
{
    struct dp_xdp *x = &p->offload;
    const uint8_t *data;
    uint32_t act, dlen;
    bool fault;

    if (hop && p->carrier_off) {
        p->st.drop_link_down++;   /* redirected to a guest whose link is down */
        return;
    }
    if (!x->prog) {
        deliver(p, pkt, len);
        return;
    }
    if (len > VXDP_XDP_MAX_DATA) {
        p->st.drop_oversize++;   /* larger than an XDP frame can hold */
        return;
    }
    if (hop)
        xdp_burst_begin(x, p->ifindex, 0);   /* another port's burst: set up this run */
    act = xdp_run(x, pkt, len, &fault);
    data = x->run->data;
    dlen = (uint32_t)(x->run->data_end - x->run->data);
    switch (act) {
    case XDP_DROP:
        p->st.off_drop++;
        break;
    case XDP_PASS:
        p->st.off_pass++;
        deliver(p, data, dlen);
        break;
    case XDP_TX:
        p->st.off_tx++;
        to_wire(p, wire, data, dlen);
        break;
    case XDP_REDIRECT: {
        int64_t target = x->run->redirect;
        struct vxdp_port *to;
        p->st.off_redirect++;
        if (target == (int64_t)p->sw->wire_ifindex) {
            to_wire(p, wire, data, dlen);
        } else if (target == (int64_t)p->ifindex) {
            deliver(p, data, dlen);   /* out of its own device: into the guest */
        } else if (!hop && target > 0 && (to = dp_switch_find(p->sw, (uint32_t)target))) {
            to->st.redirect_in++;
            guest_in(to, wire, data, dlen, 1);
        } else {
            p->st.drop_redirect++;
        }
        break;
    }
    default:
        if (fault)
            p->st.off_fault++;
        else if (act != XDP_ABORTED)
            p->st.off_invalid++;
        p->st.off_aborted++;
        break;
    }
    xdp_scrub(x);
}

void dp_rx_begin(struct vxdp_port *p)
{
    if (p->xdp.prog)
        xdp_burst_begin(&p->xdp, p->ifindex, 0);
    if (p->offload.prog)
        xdp_burst_begin(&p->offload, p->ifindex, 0);
    /* While the ring holds buffers the driver need not kick: a kick per refill would
     * cost the guest a notification and this side a wake-up for nothing.  Kicks come
     * back on when take_chain finds the ring empty (virtio 1.3 §2.7.10). */
    if (p->rx && p->rx->notifications && !p->rx->broken)
        vxdp_vq_disable_notifications(p->rx);
    if (p->rx)
        p->rx->defer_used = true;   /* used idx once, at the end of the burst */
}

void dp_rx_frame(struct vxdp_port *p, struct vxdp_burst *wire, const uint8_t *pkt,
                 uint32_t len)
{
    uint32_t act, dlen;
    uint8_t *data;
    bool fault;

    p->st.rx_packets++;
    p->st.rx_bytes += len;
    if (len < VXDP_ETH_HLEN) {
        p->st.drop_runt++;
        return;
    }
    if (!p->xdp.prog) {
        if (len > VXDP_DP_MAX_FRAME)
            p->st.drop_oversize++;
        else
            guest_in(p, wire, pkt, len, 0);
        return;
    }
    if (len > VXDP_XDP_MAX_DATA) {
        /* larger than an XDP frame can hold: native XDP drops it */
        p->st.drop_oversize++;
        return;
    }
    act = xdp_run(&p->xdp, pkt, len, &fault);
    data = p->xdp.run->data;
    dlen = (uint32_t)(p->xdp.run->data_end - data);
    switch (act) {
    case XDP_DROP:
        p->st.xdp_drop++;
        break;
    case XDP_PASS:
        p->st.xdp_pass++;
        guest_in(p, wire, data, dlen, 0);
        break;
    case XDP_TX:
        p->st.xdp_tx++;
        to_wire(p, wire, data, dlen);
        break;
    case XDP_REDIRECT: {
        int64_t target = p->xdp.run->redirect;
        struct vxdp_port *to;
        p->st.xdp_redirect++;
        if (target == (int64_t)p->sw->wire_ifindex) {
            to_wire(p, wire, data, dlen);
        } else if (target > 0 && (to = dp_switch_find(p->sw, (uint32_t)target))) {
            to->st.redirect_in++;
            guest_in(to, wire, data, dlen, to == p ? 0 : 1);
        } else {
            p->st.drop_redirect++;
        }
        break;
    }
    default:
        if (fault)
            p->st.xdp_fault++;
        else if (act != XDP_ABORTED)
            p->st.xdp_invalid++;
        p->st.xdp_aborted++;
        break;
    }
    xdp_scrub(&p->xdp);
}

void dp_rx_end(struct vxdp_port *p)
{
    if (p->rx)
        vxdp_vq_flush_used(p->rx);
}

int vxdp_port_rx_burst(struct vxdp_port *p, const struct vxdp_burst *in,
                       struct vxdp_burst *wire, char *err, size_t errlen)
{
    const uint8_t *pkt;
    int rc;

    if ((rc = dp_burst_check(in, false, "rx", err, errlen)) ||
        (rc = dp_burst_check(wire, true, "wire", err, errlen)))
        return rc;
    if (!in->count)
        return 0;
    dp_rx_begin(p);
    pkt = in->buf;
    for (uint32_t i = 0; i < in->count; pkt += in->len[i], i++)
        dp_rx_frame(p, wire, pkt, in->len[i]);
    dp_rx_end(p);
    return (int)in->count;
}

void vxdp_port_set_carrier(struct vxdp_port *p, int up)
{
    p->carrier_off = !up;
}

int vxdp_port_redirect_in(struct vxdp_port *p, const struct vxdp_burst *in,
                          struct vxdp_burst *wire, char *err, size_t errlen)
{
    const uint8_t *pkt;
    int rc;

    if ((rc = dp_burst_check(in, false, "redirect", err, errlen)) ||
        (rc = dp_burst_check(wire, true, "wire", err, errlen)))
        return rc;
    if (!in->count)
        return 0;
    pkt = in->buf;
    for (uint32_t i = 0; i < in->count; pkt += in->len[i], i++) {
        p->st.redirect_in++;
        guest_in(p, wire, pkt, in->len[i], 1);
    }
    dp_rx_end(p);
    return (int)in->count;
}

/* true when a tx header and its frame keep to §5.1.6.2.1 and §5.1.4.2 */
static bool tx_header_ok(const struct vxdp_port *p, const uint8_t *hdr, uint32_t frame_len,
                         const uint8_t *eth)
{
    uint8_t flags = hdr[0], gso = hdr[1], base = gso & (uint8_t)~GSO_ECN;
    /* num_buffers is not checked: see dp_tx_take */
    /* §5.1.6.2.1: "The driver MUST NOT set the VIRTIO_NET_HDR_F_DATA_VALID and
     * VIRTIO_NET_HDR_F_RSC_INFO bits in flags"; "If VIRTIO_NET_F_CSUM is not negotiated,
     * the driver MUST set flags to zero" */
    if (flags & (HDR_F_DATA_VALID | HDR_F_RSC_INFO))
        return false;
    if (flags && !HAS(p->features, NET_F_CSUM))
        return false;
    /* §5.1.6.2.1: gso_type only with the HOST_* feature that carries it */
    switch (base) {
    case GSO_NONE: break;
    case GSO_TCPV4: if (!HAS(p->features, NET_F_HOST_TSO4)) return false; break;
    case GSO_TCPV6: if (!HAS(p->features, NET_F_HOST_TSO6)) return false; break;
    case GSO_UDP: if (!HAS(p->features, NET_F_HOST_UFO)) return false; break;
    case GSO_UDP_L4: if (!HAS(p->features, NET_F_HOST_USO)) return false; break;
    default: return false;
    }
    if ((gso & GSO_ECN) && !HAS(p->features, NET_F_HOST_ECN))
        return false;
    /* §5.1.6.2: a frame follows the header */
    if (frame_len == 0)
        return false;
    /* §5.1.4.2: with VIRTIO_NET_F_MTU no packet larger than mtu + Ethernet header
     * without GSO */
    if (p->mtu && base == GSO_NONE &&
        frame_len > p->mtu + VXDP_ETH_HLEN + (vlan_tagged(eth, frame_len) ? 4 : 0))
        return false;
    return true;
}

/* Gather `n` readable bytes of the last popped chain from byte `at` on. */
static void gather(const struct vxdp_vq *vq, uint64_t at, uint8_t *dst, uint64_t n)
{
    for (uint32_t i = 0; i < vq->nreadable && n; i++) {
        const struct vxdp_iov *s = &vq->iov[i];
        uint64_t k;
        if (at >= s->len) {
            at -= s->len;
            continue;
        }
        k = s->len - at < n ? s->len - at : n;
        memcpy(dst, s->p + at, k);
        dst += k;
        n -= k;
        at = 0;
    }
}

int dp_tx_take(struct vxdp_port *p, uint32_t budget, struct vxdp_burst *wire)
{
    struct vxdp_vq *vq = p->tx;
    uint32_t done = 0, n = 0;
    int rc;

    if (!vq || vq->broken)
        return 0;
    if (budget > VXDP_BURST_MAX)
        budget = VXDP_BURST_MAX;
    while (done < budget) {
        uint64_t frame_len;
        rc = vxdp_vq_pop_int(vq);
        if (rc <= 0)
            break;   /* empty, or broken: the queue recorded why */
        if (vq->readable_len < p->hdr_len) {
            p->st.drop_tx_header++;   /* §5.1.6.2: every packet starts with the header */
        } else {
            frame_len = vq->readable_len - p->hdr_len;
            if (vq->iov[0].len >= DP_HDR_MAX)   /* the usual layout: one copy, no loop */
                memcpy(p->tx_hdr, vq->iov[0].p, DP_HDR_MAX);
            else
                gather(vq, 0, p->tx_hdr, p->hdr_len);
            /* virtio 1.3 §5.1.6.2.1: "The driver MUST set num_buffers to zero", yet the
             * field means nothing on transmit, and DPDK's virtio PMD leaves there what
             * the mbuf's headroom held (num_buffers of an earlier receive) whenever it
             * pushes the header into the headroom: a testpmd guest's frames were
             * dropped by the tenth, and all of a guest forwarding what it received.
             * Counted and ignored, as vhost-net, QEMU and DPDK's vhost ignore it. */
            if (p->hdr_len >= 12 && vxdp_ld16(p->tx_hdr + HDR_NUM_BUFFERS))
                p->st.tx_num_buffers++;
            if (frame_len > VXDP_DP_MAX_FRAME) {
                p->st.drop_tx_oversize++;
            } else if (frame_len > wire->cap - wire->used || wire->count >= wire->max) {
                if (frame_len > wire->cap) {
                    p->st.drop_tx_oversize++;
                } else {
                    /* the wire is full: leave the chain for the next burst */
                    vxdp_vq_unpop(vq, &vq->head, 1);
                    break;
                }
            } else {
                uint8_t *dst = wire->buf + wire->used;
                if (vq->iov[0].len >= p->hdr_len + frame_len)   /* one buffer */
                    vxdp_memcpy(dst, vq->iov[0].p + p->hdr_len, frame_len);
                else
                    gather(vq, p->hdr_len, dst, frame_len);
                if (tx_header_ok(p, p->tx_hdr, (uint32_t)frame_len, dst)) {
                    wire->len[wire->count++] = (uint32_t)frame_len;
                    wire->used += frame_len;
                    p->st.tx_packets++;
                    p->st.tx_bytes += frame_len;
                    p->st.wire_packets++;
                    p->st.wire_bytes += frame_len;
                } else {
                    p->st.drop_tx_header++;
                }
            }
        }
        /* transmit buffers are device-readable: nothing written (§2.7.8: len 0) */
        p->tx_head[n] = vq->head;
        p->tx_len[n] = 0;
        n++;
        done++;
        if (n == DP_TX_USED_BATCH) {
            /* the driver has these back while the rest of the burst is worked */
            vxdp_vq_push_int(vq, p->tx_head, p->tx_len, n);
            n = 0;
        }
    }
    if (n)
        vxdp_vq_push_int(vq, p->tx_head, p->tx_len, n);
    return (int)done;
}

int vxdp_port_tx_burst(struct vxdp_port *p, uint32_t budget, struct vxdp_burst *wire,
                       char *err, size_t errlen)
{
    int rc;
    if ((rc = dp_burst_check(wire, true, "wire", err, errlen)))
        return rc;
    return dp_tx_take(p, budget, wire);
}

/* Receive buffers posted and not taken, as the driver's avail idx says now (read afresh):
 * one buffer a frame, less for frames that span several.  -1 without a receive queue or
 * with a broken one. */
int vxdp_port_rx_room(struct vxdp_port *p)
{
    int rc = p->rx ? vxdp_vq_pending(p->rx, NULL, 0) : -1;
    return rc < 0 ? -1 : rc;
}

/* Interrupt decisions for what was used since the last call: bit 0 rx, bit 1 tx. */
int vxdp_port_irq(struct vxdp_port *p)
{
    int mask = 0;
    struct vxdp_vq *q[2] = { p->rx, p->tx };
    for (int i = 0; i < 2; i++) {
        if (!q[i] || q[i]->used_idx == q[i]->signalled_used)
            continue;
        if (vxdp_vq_should_interrupt(q[i])) {
            mask |= 1 << i;
            p->st.irq_sent++;
        } else {
            p->st.irq_suppressed++;
        }
    }
    return mask;
}

uint32_t dp_port_collect(struct vxdp_port *p)
{
    uint32_t broken = 0;
    p->events |= (uint32_t)vxdp_port_irq(p);   /* VXDP_EV_RX_IRQ, VXDP_EV_TX_IRQ */
    if (p->rx && p->rx->broken)
        broken |= VXDP_EV_RX_BROKEN;
    if (p->tx && p->tx->broken)
        broken |= VXDP_EV_TX_BROKEN;
    p->events |= broken & ~p->told_broken;
    p->told_broken |= broken;
    return p->events;
}

/* ---------------------------------------------------------------- guest ports */

struct vxdp_gport {
    struct vxdp_vq *rx, *tx;
    uint64_t features;
    uint32_t hdr_len;
    bool mrg;
    uint64_t rx_gpa, tx_gpa;
    uint8_t *rx_pool, *tx_pool;
    uint32_t rx_bufs, rx_buf_size, tx_bufs, tx_buf_size;
    uint32_t *rx_free, nrx_free, *tx_free, ntx_free;
    uint32_t *rx_buf_of, *tx_buf_of;   /* per head: the pool buffer it carries */
    uint8_t *linear;                   /* a merged frame, reassembled */
    bool tx_added;
    struct dp_xdp xdp;
    struct vxdp_gport_stats st;
};

int vxdp_gport_new(struct vxdp_gport **out, struct vxdp_vq *rx, struct vxdp_vq *tx,
                   uint64_t features, uint64_t rx_pool, uint32_t rx_bufs,
                   uint32_t rx_buf_size, uint64_t tx_pool, uint32_t tx_bufs,
                   uint32_t tx_buf_size, char *err, size_t errlen)
{
    struct vxdp_gport *g;
    uint32_t hdr = hdr_len_of(features);

    *out = NULL;
    if (!rx || !tx || !rx->driver || !tx->driver)
        return vxdp_errf(err, errlen, -EINVAL, "a guest port takes driver-side rx and tx "
                         "queues");
    if (rx->drv_inflight || tx->drv_inflight)
        return vxdp_errf(err, errlen, -EBUSY, "the queues have chains in flight");
    if (rx_buf_size < hdr || tx_buf_size <= hdr || !rx_bufs || !tx_bufs)
        return vxdp_errf(err, errlen, -EINVAL, "buffers of %u (rx) and %u (tx) bytes: both "
                         "must hold the %u-byte header, tx a frame too", rx_buf_size,
                         tx_buf_size, hdr);
    g = calloc(1, sizeof(*g));
    if (!g)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    g->rx = rx;
    g->tx = tx;
    g->features = features;
    g->hdr_len = hdr;
    g->mrg = HAS(features, NET_F_MRG_RXBUF);
    g->rx_gpa = rx_pool;
    g->tx_gpa = tx_pool;
    g->rx_bufs = rx_bufs;
    g->tx_bufs = tx_bufs;
    g->rx_buf_size = rx_buf_size;
    g->tx_buf_size = tx_buf_size;
    g->rx_pool = vxdp_gmem_xlate(rx->mem, rx_pool, (uint64_t)rx_bufs * rx_buf_size);
    g->tx_pool = vxdp_gmem_xlate(tx->mem, tx_pool, (uint64_t)tx_bufs * tx_buf_size);
    g->rx_free = malloc(sizeof(uint32_t) * rx_bufs);
    g->tx_free = malloc(sizeof(uint32_t) * tx_bufs);
    g->rx_buf_of = calloc(rx->size, sizeof(uint32_t));
    g->tx_buf_of = calloc(tx->size, sizeof(uint32_t));
    g->linear = malloc(VXDP_DP_MAX_FRAME);
    if (!g->rx_pool || !g->tx_pool) {
        vxdp_gport_free(g);
        return vxdp_errf(err, errlen, -EFAULT, "buffer pools 0x%llx+%u*%u / 0x%llx+%u*%u are "
                         "not inside one guest memory region", (unsigned long long)rx_pool,
                         rx_bufs, rx_buf_size, (unsigned long long)tx_pool, tx_bufs,
                         tx_buf_size);
    }
    if (!g->rx_free || !g->tx_free || !g->rx_buf_of || !g->tx_buf_of || !g->linear) {
        vxdp_gport_free(g);
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < rx_bufs; i++)
        g->rx_free[i] = rx_bufs - 1 - i;
    for (uint32_t i = 0; i < tx_bufs; i++)
        g->tx_free[i] = tx_bufs - 1 - i;
    g->nrx_free = rx_bufs;
    g->ntx_free = tx_bufs;
    *out = g;
    return 0;
}

void vxdp_gport_free(struct vxdp_gport *g)
{
    if (!g)
        return;
    free(g->rx_free);
    free(g->tx_free);
    free(g->rx_buf_of);
    free(g->tx_buf_of);
    free(g->linear);
    xdp_free(&g->xdp);
    free(g);
}

int vxdp_gport_attach(struct vxdp_gport *g, struct vxdp_prog *prog, struct vxdp_env *env,
                      char *err, size_t errlen)
{
    return xdp_attach(&g->xdp, prog, env, err, errlen);
}

void vxdp_gport_get_stats(const struct vxdp_gport *g, struct vxdp_gport_stats *st)
{
    *st = g->st;
}

size_t vxdp_gport_last_fault(const struct vxdp_gport *g, char *buf, size_t cap)
{
    return copy_fault(&g->xdp, buf, cap);
}

static struct vxdp_vq *gport_queue(const struct vxdp_gport *g, uint32_t queue)
{
    return queue == 0 ? g->rx : queue == 1 ? g->tx : NULL;
}

/* Used-buffer notifications of queue 0 (rx) or 1 (tx), as virtio_net's NAPI poll turns
 * them: off while the driver polls a non-empty ring (virtqueue_disable_cb), on before it
 * sleeps (virtqueue_enable_cb_prepare), and then 1 when used buffers arrived in between
 * (virtqueue_poll): poll again instead of sleeping (virtio 1.3 §2.7.7, §2.7.10). */
int vxdp_gport_interrupts(struct vxdp_gport *g, uint32_t queue, int enable, char *err,
                          size_t errlen)
{
    struct vxdp_vq *vq = gport_queue(g, queue);
    if (!vq)
        return vxdp_errf(err, errlen, -EINVAL, "guest port queue %u: 0 is rx, 1 is tx",
                         queue);
    if (!enable) {
        vxdp_vq_disable_interrupts(vq);
        return 0;
    }
    return vxdp_vq_enable_interrupts(vq, err, errlen);
}

/* The chains in flight on queue 0 (rx) or 1 (tx), for a hand-back to another driver: each
 * is one descriptor (its head) carrying one pool buffer at gpa[i]. */
int vxdp_gport_inflight(const struct vxdp_gport *g, uint32_t queue, uint32_t *heads,
                        uint64_t *gpa, uint32_t cap, char *err, size_t errlen)
{
    const struct vxdp_vq *vq = gport_queue(g, queue);
    uint32_t n = 0;
    if (!vq)
        return vxdp_errf(err, errlen, -EINVAL, "guest port queue %u: 0 is rx, 1 is tx",
                         queue);
    for (uint32_t h = 0; h < vq->size; h++) {
        if (!vq->drv_ndesc[h])
            continue;
        if (n == cap)
            return vxdp_errf(err, errlen, -ENOSPC, "%s: more than %u chains in flight",
                             vq->name, cap);
        heads[n] = h;
        gpa[n] = queue == 0 ? g->rx_gpa + (uint64_t)g->rx_buf_of[h] * g->rx_buf_size
                            : g->tx_gpa + (uint64_t)g->tx_buf_of[h] * g->tx_buf_size;
        n++;
    }
    return (int)n;
}

/* Post every free rx buffer the ring has descriptors for; bit 0 of *kicks on a kick. */
int vxdp_gport_refill(struct vxdp_gport *g, uint32_t *kicks)
{
    int added = 0;
    while (g->nrx_free && g->rx->nfree) {
        uint32_t b = g->rx_free[g->nrx_free - 1];
        uint64_t gpa = g->rx_gpa + (uint64_t)b * g->rx_buf_size;
        int head = vxdp_vq_add_int(g->rx, &gpa, &g->rx_buf_size, 1, 0);
        if (head < 0)
            break;
        g->nrx_free--;
        g->rx_buf_of[head] = b;
        added++;
    }
    g->st.rx_refilled += (uint64_t)added;
    if (added && vxdp_vq_publish(g->rx))
        *kicks |= 1;
    return added;
}

static void tx_reap(struct vxdp_gport *g)
{
    uint32_t id, len;
    while (vxdp_vq_reap_one(g->tx, &id, &len) == 1)
        g->tx_free[g->ntx_free++] = g->tx_buf_of[id];
}

/* One frame onto the guest's tx ring: -ENOSPC when no buffer or descriptor is free. */
static int gport_xmit(struct vxdp_gport *g, const uint8_t *frame, uint32_t len)
{
    uint32_t b, total = g->hdr_len + len;
    uint64_t gpa;
    uint8_t *p;
    int head;

    if (len > g->tx_buf_size - g->hdr_len)
        return -EMSGSIZE;
    if (!g->ntx_free || !g->tx->nfree)
        tx_reap(g);
    if (!g->ntx_free || !g->tx->nfree)
        return -ENOSPC;
    b = g->tx_free[g->ntx_free - 1];
    p = g->tx_pool + (size_t)b * g->tx_buf_size;
    /* virtio 1.3 §5.1.6.2: flags and gso_type 0, num_buffers 0 (§5.1.6.2.1) */
    memset(p, 0, g->hdr_len);
    memcpy(p + g->hdr_len, frame, len);
    gpa = g->tx_gpa + (uint64_t)b * g->tx_buf_size;
    head = vxdp_vq_add_int(g->tx, &gpa, &total, 1, 1);
    if (head < 0)
        return -ENOSPC;
    g->ntx_free--;
    g->tx_buf_of[head] = b;
    g->tx_added = true;
    g->st.tx_packets++;
    g->st.tx_bytes += len;
    return 0;
}

/* One used rx buffer: its data (clamped) or NULL when the device overran it. */
static uint8_t *rx_take(struct vxdp_gport *g, uint32_t id, uint32_t *len)
{
    uint32_t b = g->rx_buf_of[id];
    g->rx_free[g->nrx_free++] = b;
    if (*len > g->rx_buf_size) {
        /* the device claims more than the buffer holds (virtio 1.3 §2.7.8.1) */
        g->st.drop_overrun++;
        return NULL;
    }
    return g->rx_pool + (size_t)b * g->rx_buf_size;
}

int vxdp_gport_rx_burst(struct vxdp_gport *g, uint32_t budget, struct vxdp_burst *pass,
                        uint32_t *kicks, char *err, size_t errlen)
{
    uint32_t n = 0;
    int rc;

    *kicks = 0;
    if ((rc = dp_burst_check(pass, true, "pass", err, errlen)))
        return rc;
    tx_reap(g);
    if (g->xdp.prog)
        xdp_burst_begin(&g->xdp, 1, 0);
    while (n < budget) {
        uint32_t id, len, nb, flen;
        uint8_t *buf, *frame;
        bool bad = false;

        rc = vxdp_vq_reap_one(g->rx, &id, &len);
        if (rc < 0) {
            g->st.drop_ring_broken++;
            break;
        }
        if (rc == 0)
            break;
        n++;
        buf = rx_take(g, id, &len);
        if (!buf)
            continue;
        if (len < g->hdr_len) {
            g->st.drop_bad_len++;
            continue;
        }
        nb = g->mrg ? vxdp_ld16(buf + HDR_NUM_BUFFERS) : 1;
        frame = buf + g->hdr_len;
        flen = len - g->hdr_len;
        if (nb == 0) {
            g->st.drop_bad_num_buffers++;
            continue;
        }
        if (nb > 1) {
            /* §5.1.6.4: the frame continues in the next nb - 1 used buffers */
            memcpy(g->linear, frame, flen);
            for (uint32_t k = 1; k < nb; k++) {
                uint32_t id2, len2;
                uint8_t *b2;
                if (vxdp_vq_reap_one(g->rx, &id2, &len2) != 1) {
                    g->st.drop_bad_num_buffers++;
                    bad = true;
                    break;
                }
                b2 = rx_take(g, id2, &len2);
                if (!b2 || bad || len2 > VXDP_DP_MAX_FRAME - flen) {
                    if (b2 && !bad)
                        g->st.drop_oversize++;
                    bad = true;
                    continue;
                }
                memcpy(g->linear + flen, b2, len2);
                flen += len2;
            }
            if (bad)
                continue;
            frame = g->linear;
        }
        g->st.rx_packets++;
        g->st.rx_bytes += flen;
        if (!g->xdp.prog) {
            if (dp_burst_put(pass, frame, flen)) {
                g->st.pass_packets++;
                g->st.pass_bytes += flen;
            } else {
                g->st.drop_pass_full++;
            }
            continue;
        }
        if (flen < VXDP_ETH_HLEN || flen > VXDP_XDP_MAX_DATA) {
            g->st.drop_oversize++;
            continue;
        }
        {
            bool fault;
            uint32_t act = xdp_run(&g->xdp, frame, flen, &fault);
            uint8_t *data = g->xdp.run->data;
            uint32_t dlen = (uint32_t)(g->xdp.run->data_end - data);
            switch (act) {
            case XDP_DROP:
                g->st.xdp_drop++;
                break;
            case XDP_PASS:
                g->st.xdp_pass++;
                if (dp_burst_put(pass, data, dlen)) {
                    g->st.pass_packets++;
                    g->st.pass_bytes += dlen;
                } else {
                    g->st.drop_pass_full++;
                }
                break;
            case XDP_TX:
                g->st.xdp_tx++;
                if (gport_xmit(g, data, dlen))
                    g->st.drop_tx_full++;
                break;
            case XDP_REDIRECT:
                /* the guest has this one device: nothing to redirect to */
                g->st.xdp_redirect++;
                g->st.drop_redirect++;
                break;
            default:
                if (fault)
                    g->st.xdp_fault++;
                else if (act != XDP_ABORTED)
                    g->st.xdp_invalid++;
                g->st.xdp_aborted++;
                break;
            }
            xdp_scrub(&g->xdp);
        }
    }
    if (g->tx_added) {
        g->tx_added = false;
        if (vxdp_vq_publish(g->tx))
            *kicks |= 2;
    }
    vxdp_gport_refill(g, kicks);
    return (int)n;
}

int vxdp_gport_tx_burst(struct vxdp_gport *g, const struct vxdp_burst *in, uint32_t *kicks,
                        char *err, size_t errlen)
{
    const uint8_t *p;
    uint32_t i;
    int rc;

    *kicks = 0;
    if ((rc = dp_burst_check(in, false, "tx", err, errlen)))
        return rc;
    tx_reap(g);
    p = in->buf;
    for (i = 0; i < in->count; p += in->len[i], i++) {
        rc = gport_xmit(g, p, in->len[i]);
        if (rc == -ENOSPC)
            break;
        if (rc == -EMSGSIZE)
            g->st.drop_oversize++;
    }
    if (g->tx_added) {
        g->tx_added = false;
        if (vxdp_vq_publish(g->tx))
            *kicks |= 2;
    }
    return (int)i;
}
