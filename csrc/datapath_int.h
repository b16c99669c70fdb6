/*
 * Internals of the host datapath shared by its two files, never seen by cdef: the ports
 * and their bursts (datapath.c) and the switch that forwards between them by MAC
 * (switch.c).
 */
#ifndef VXDP_DATAPATH_INT_H
#define VXDP_DATAPATH_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "vxdp_core.h"

#define DP_HDR_MAX 20                   /* the longest virtio_net_hdr (HASH_REPORT) */

/* One XDP program slot of a port: the program, its environment, a run and a frame. */
struct dp_xdp {
    struct vxdp_prog *prog;
    struct vxdp_env *env;
    struct vxdp_run *run;
    uint8_t *frame;
    char fault[VXDP_ERRBUF_SIZE];
};

/* One guest of the forwarding table, as vxdp_switch_set_guests gave it. */
struct dp_guest {
    uint64_t key;                        /* the MAC as an integer (switch.c) */
    uint8_t mac[6];
    bool flood, wait;
    struct vxdp_port *port;
};

struct vxdp_switch {
    uint32_t wire_ifindex;
    uint32_t refs;
    uint32_t nports;
    struct vxdp_port *ports[VXDP_SWITCH_MAX_PORTS];
    /* the forwarding table (switch.c) */
    uint32_t nguests;
    struct dp_guest guests[VXDP_SWITCH_MAX_PORTS];
    int32_t dest[VXDP_BURST_MAX];        /* one call's frames: a guest, or DP_FLOOD/DP_WIRE */
    const uint8_t *frame[VXDP_BURST_MAX];
    uint32_t flen[VXDP_BURST_MAX];
    uint16_t link[VXDP_BURST_MAX];       /* the frames of one destination, chained */
    uint16_t head[VXDP_SWITCH_MAX_PORTS], flood_head;
    uint8_t *stage;                      /* a transmit burst, when it may stay local */
    size_t stage_cap;
};

struct rx_seg {
    uint8_t *p;
    uint32_t len;
};

struct vxdp_port {
    struct vxdp_switch *sw;
    uint32_t ifindex;
    struct vxdp_vq *rx, *tx;
    uint64_t features;
    uint32_t hdr_len, mtu;
    bool mrg;
    bool carrier_off;               /* the link is down: redirects into it are dropped */
    struct dp_xdp xdp;              /* the host-attached program */
    struct dp_xdp offload;          /* the program the guest offloaded */
    struct vxdp_port_stats st;
    uint32_t events;                /* VXDP_EV_* not yet reported (vxdp_switch_events) */
    uint32_t told_broken;           /* VXDP_EV_*_BROKEN reported already */
    /* rx chains taken for a frame: held over to the next one when they were too few */
    uint32_t held, nseg;
    uint64_t room;
    uint16_t head[VXDP_RX_MAX_BUFS];
    uint64_t cap[VXDP_RX_MAX_BUFS];
    uint32_t written[VXDP_RX_MAX_BUFS];
    uint32_t segs_of[VXDP_RX_MAX_BUFS];   /* writable segments of each held chain */
    struct rx_seg seg[VXDP_RX_MAX_SEGS];
    /* tx chains completed in this burst */
    uint16_t tx_head[VXDP_BURST_MAX];
    uint32_t tx_len[VXDP_BURST_MAX];
    uint8_t tx_hdr[DP_HDR_MAX];
};

int dp_burst_check(const struct vxdp_burst *b, bool out, const char *what, char *err,
                   size_t errlen);
bool dp_burst_put(struct vxdp_burst *b, const uint8_t *data, uint32_t len);
struct vxdp_port *dp_switch_find(const struct vxdp_switch *sw, uint32_t ifindex);

/* A port's receive burst in three steps (vxdp_port_rx_burst is begin, frames, end):
 * programs set up and kicks off while the ring holds buffers; one frame through the
 * host-attached program, the offloaded one and into the guest (or the wire); used idx
 * published. */
void dp_rx_begin(struct vxdp_port *p);
void dp_rx_frame(struct vxdp_port *p, struct vxdp_burst *wire, const uint8_t *pkt,
                 uint32_t len);
void dp_rx_end(struct vxdp_port *p);
/* Up to `budget` transmit chains of `p` as frames appended to `out`; chains completed. */
int dp_tx_take(struct vxdp_port *p, uint32_t budget, struct vxdp_burst *out);
/* The port's pending events after the last work: interrupts due, rings newly broken. */
uint32_t dp_port_collect(struct vxdp_port *p);
/* The switch forgets a port that goes (its table entries become the edge's). */
void dp_switch_forget(struct vxdp_switch *sw, const struct vxdp_port *p);
void dp_switch_release(struct vxdp_switch *sw);

#endif
