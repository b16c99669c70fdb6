/*
 * vxdp packet core: the C API that Python reaches through cffi.
 *
 * ubpf-style conventions: opaque handles, every symbol prefixed vxdp_, errors reported as a
 * negative errno return plus text in a caller-supplied buffer, limits as macros.
 *
 * This header is read twice: by the C compiler, and by cffi's cdef (csrc/build_core.py strips
 * preprocessor lines first), so everything between the CDEF markers must be plain
 * declarations that cdef understands.
 *
 * Theory of operation
 *   A program is loaded once (vxdp_prog_load): the loader checks its structure (hostile
 *   input: every opcode, register, jump target and call target), rebinds its map references
 *   to map handles and picks the helper table of its mode.  Runs never trust the program:
 *   every load and store is checked against the regions the run owns and a bad access fails
 *   the run with the pc and the address, leaving the process and the maps intact.
 *   The core is not thread-safe per handle: callers serialise the use of one handle.
 */
#ifndef VXDP_CORE_H
#define VXDP_CORE_H

#include <stddef.h>
#include <stdint.h>

#define VXDP_CORE_ABI 6
#define VXDP_ERRBUF_SIZE 256

#define VXDP_MAX_INSNS (1u << 20)       /* BPF_COMPLEXITY_LIMIT_INSNS */
#define VXDP_STACK_SIZE 512             /* MAX_BPF_STACK */
#define VXDP_MAX_CALL_FRAMES 8          /* MAX_CALL_FRAMES */
#define VXDP_MAX_TAIL_CALLS 33          /* MAX_TAIL_CALL_CNT */
#define VXDP_MAX_PROG_MAPS 64           /* MAX_USED_MAPS */
#define VXDP_BRANCH_BUDGET (1u << 26)   /* taken backward jumps + calls per run (hang guard) */
#define VXDP_MAX_RINGBUF_RESV 64        /* outstanding ringbuf reservations per run */
#define VXDP_PERF_RING_SIZE (256u << 10) /* bytes of perf_event_output records a
                                           PERF_EVENT_ARRAY keeps until they are read */
#define VXDP_TRACE_BUF_SIZE (64u << 10) /* bytes of trace_printk output kept per env */

/* XDP frame of BPF_PROG_TEST_RUN (net/bpf/test_run.c, bpf_prog_test_run_xdp) */
#define VXDP_PAGE_SIZE 4096
#define VXDP_XDP_HEADROOM 256           /* XDP_PACKET_HEADROOM */
#define VXDP_XDP_TAILROOM 320           /* SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) */
#define VXDP_XDP_MAX_DATA (VXDP_PAGE_SIZE - VXDP_XDP_HEADROOM - VXDP_XDP_TAILROOM)
/* sizeof(struct xdp_frame) on 64-bit since "xdp: remove xdp_mem_info from xdp_frame" (6.15);
 * the head of the headroom that adjust_head and adjust_meta keep out of reach */
#define VXDP_XDP_FRAME_STRUCT 40
/* the longest output: data_meta at the end of the xdp_frame, data_end at the hard end */
#define VXDP_XDP_MAX_OUT (VXDP_PAGE_SIZE - VXDP_XDP_TAILROOM - VXDP_XDP_FRAME_STRUCT)
#define VXDP_XDP_META_MAX 255           /* xdp_metalen_invalid(): 4-aligned, at most the
                                           u8 skb_shared_info.meta_len (32 before 6.x) */
#define VXDP_ETH_HLEN 14

/* program modes: which helper table and which context the program runs with */
#define VXDP_MODE_RAW 0                 /* ubpf/bpf_conformance harness: r1 = mem, r2 = len */
#define VXDP_MODE_XDP 1                 /* r1 = struct xdp_md, kernel XDP helpers */

/* map types: enum bpf_map_type */
#define VXDP_MAP_HASH 1
#define VXDP_MAP_ARRAY 2
#define VXDP_MAP_PROG_ARRAY 3
#define VXDP_MAP_PERF_EVENT_ARRAY 4
#define VXDP_MAP_PERCPU_HASH 5
#define VXDP_MAP_PERCPU_ARRAY 6
#define VXDP_MAP_LRU_HASH 9
#define VXDP_MAP_LRU_PERCPU_HASH 10
#define VXDP_MAP_LPM_TRIE 11
#define VXDP_MAP_ARRAY_OF_MAPS 12
#define VXDP_MAP_HASH_OF_MAPS 13
#define VXDP_MAP_DEVMAP 14
#define VXDP_MAP_XSKMAP 17
#define VXDP_MAP_DEVMAP_HASH 25
#define VXDP_MAP_RINGBUF 27

#define VXDP_F_NO_PREALLOC (1u << 0)    /* BPF_F_NO_PREALLOC */
#define VXDP_F_NO_COMMON_LRU (1u << 1)  /* BPF_F_NO_COMMON_LRU: one LRU per CPU */
#define VXDP_F_RDONLY_PROG (1u << 7)    /* BPF_F_RDONLY_PROG */

/* split virtqueues and the datapath (vring.c, datapath.c) */
#define VXDP_GMEM_MAX_REGIONS 64        /* memory regions of one guest (vhost-user slots) */
#define VXDP_VQ_MAX_SIZE 32768          /* virtio 1.3 §2.7: split queue size, a power of 2 */
#define VXDP_VQ_CLAUSE_SIZE 16
#define VXDP_VQ_F_EVENT_IDX (1u << 0)   /* VIRTIO_F_EVENT_IDX negotiated */
#define VXDP_VQ_F_INDIRECT (1u << 1)    /* VIRTIO_F_INDIRECT_DESC negotiated */
#define VXDP_VQ_F_DRIVER (1u << 2)      /* the driver's side of the queue */
#define VXDP_SWITCH_MAX_PORTS 256       /* ports one host switch redirects between */
#define VXDP_BURST_MAX 256              /* frames one burst call moves */
#define VXDP_RX_MAX_BUFS 64             /* rx buffers one frame may span (MRG_RXBUF) */
#define VXDP_RX_MAX_SEGS 256            /* writable segments of those buffers */
#define VXDP_DP_MAX_FRAME 65550         /* a GSO-less frame: 64 KiB + Ethernet and VLAN */
#define VXDP_GUARD_SLOTS 1024           /* guest memory ranges the SIGBUS guard watches */
/* what a switch call leaves the edge, per port (vxdp_switch_events) */
#define VXDP_EV_RX_IRQ 1                /* receive queue: interrupt due */
#define VXDP_EV_TX_IRQ 2                /* transmit queue: interrupt due */
#define VXDP_EV_RX_BROKEN 4             /* receive queue broken since the last report */
#define VXDP_EV_TX_BROKEN 8             /* transmit queue broken since the last report */
/* why vxdp_switch_pump returned */
#define VXDP_PUMP_TURN 0                /* its turn (turn_ns) is over */
#define VXDP_PUMP_NO_ROOM 1             /* a guest it waits for had no receive room for spin_ns */
#define VXDP_PUMP_END 2                 /* the source has no more frames for it */
#define VXDP_PUMP_EDGE 3                /* the edge has work: events, frames for it, a full wire */
/* why vxdp_switch_tx_turn returned */
#define VXDP_TXT_DRY 0                  /* the sender's ring had no chain for spin_ns */
#define VXDP_TXT_TURN 1                 /* its turn (turn_ns) is over */
#define VXDP_TXT_EDGE 2                 /* the edge has work: events, or frames for it */
#define VXDP_TXT_FULL 3                 /* the out burst cannot take the next chain */

/* CDEF-BEGIN */
struct vxdp_prog;
struct vxdp_map;
struct vxdp_env;

/* One XDP batch: packets packed back to back in `in`, results written by the core. */
struct vxdp_xdp_batch {
    const uint8_t *pkts;        /* packets, back to back */
    const uint32_t *pkt_len;    /* count lengths */
    uint32_t count;
    uint8_t *out;               /* output bytes, at most vxdp_xdp_max_out() per packet */
    size_t out_cap;
    uint32_t *out_off;          /* per packet: offset of its data in `out` */
    uint32_t *out_len;          /* per packet: data_end - data after the run */
    uint32_t *retval;           /* per packet: r0 as a u32 */
    int64_t *redirect;          /* per packet: redirect target ifindex, or -1 */
    uint32_t ingress_ifindex;
    uint32_t rx_queue_index;
    uint32_t done;              /* out: packets completed (on error: the failing index) */
};

const char *vxdp_core_version(void);
int vxdp_core_abi(void);
uint32_t vxdp_xdp_max_out(void);

int vxdp_prog_load(struct vxdp_prog **out, const void *insns, size_t len, uint32_t mode,
                   struct vxdp_map **maps, uint32_t nmaps, char *err, size_t errlen);
void vxdp_prog_free(struct vxdp_prog *prog);
uint32_t vxdp_prog_id(const struct vxdp_prog *prog);

struct vxdp_env *vxdp_env_new(uint64_t seed);
void vxdp_env_free(struct vxdp_env *env);
void vxdp_env_set_cpu(struct vxdp_env *env, uint32_t cpu);
void vxdp_env_set_seed(struct vxdp_env *env, uint64_t seed);
size_t vxdp_env_trace_read(struct vxdp_env *env, char *buf, size_t cap);

int vxdp_run_raw(struct vxdp_prog *prog, struct vxdp_env *env, void *mem, size_t mem_len,
                 uint64_t *retval, char *err, size_t errlen);
int vxdp_run_xdp(struct vxdp_prog *prog, struct vxdp_env *env, struct vxdp_xdp_batch *batch,
                 char *err, size_t errlen);
/* vxdp_run_xdp `repeat` times over one batch, for benchmarks: *cpu_ns is the CPU time
 * the calling thread spent in them (CLOCK_THREAD_CPUTIME_ID) */
int vxdp_run_xdp_repeat(struct vxdp_prog *prog, struct vxdp_env *env,
                        struct vxdp_xdp_batch *batch, uint32_t repeat, uint64_t *cpu_ns,
                        char *err, size_t errlen);

int vxdp_map_create(struct vxdp_map **out, uint32_t type, uint32_t key_size,
                    uint32_t value_size, uint32_t max_entries, uint32_t flags, uint32_t ncpus,
                    char *err, size_t errlen);
void vxdp_map_free(struct vxdp_map *map);
int vxdp_map_lookup(struct vxdp_map *map, const void *key, void *value, uint32_t cpu_values,
                    char *err, size_t errlen);
int vxdp_map_update(struct vxdp_map *map, const void *key, const void *value,
                    uint32_t cpu_values, uint64_t flags, char *err, size_t errlen);
int vxdp_map_delete(struct vxdp_map *map, const void *key, char *err, size_t errlen);
int vxdp_map_next_key(struct vxdp_map *map, const void *key, void *next_key, char *err,
                      size_t errlen);
int vxdp_map_freeze(struct vxdp_map *map);
/* a map's id (> 0): what a map-in-map slot holds on the syscall side */
uint32_t vxdp_map_id(const struct vxdp_map *map);
int vxdp_ringbuf_read(struct vxdp_map *map, void *buf, size_t cap);
/* programs compiled by vxdp.bpf.jit (jit_glue.c, ABI in vxdp_jit.h): `info` is the
 * address of the compiled object's vxdp_jit_info, 0 to go back to the interpreter */
uint32_t vxdp_jit_abi(void);
int vxdp_prog_set_jit(struct vxdp_prog *prog, uintptr_t info, char *err, size_t errlen);
int vxdp_prog_has_jit(const struct vxdp_prog *prog);
/* ---- split virtqueues over a guest-memory table (vring.c) ---- */
struct vxdp_gmem;
struct vxdp_vq;

struct vxdp_vq_seg {            /* one buffer of a chain */
    uint64_t gpa;
    uint32_t len;
    uint32_t writable;
};

struct vxdp_vq_chain {          /* a popped chain; its segments go to the caller's array */
    uint32_t head;
    uint32_t descriptors;       /* ring descriptors it occupied (an indirect table is one) */
    uint32_t nsegs;
    uint32_t nreadable;
    uint64_t readable_len;
    uint64_t writable_len;
};

struct vxdp_vq_state {          /* GET/SET_VRING_BASE and migration */
    uint16_t last_avail_idx;    /* device */
    uint16_t used_idx;
    uint16_t signalled_used;
    uint16_t avail_idx;         /* driver */
    uint16_t last_used_idx;
    uint16_t kicked;
    uint8_t notifications;
    uint8_t interrupts;
    uint32_t in_flight;         /* read only: chains popped/added and not yet returned */
    int32_t broken;             /* 0, or the negative errno of the refusal that broke it */
    char clause[16];
    char error[256];
};

int vxdp_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx);
int vxdp_gmem_new(struct vxdp_gmem **out, uint32_t n, const uint64_t *gpa,
                  const uint64_t *size, uint8_t *const *host, char *err, size_t errlen);
void vxdp_gmem_free(struct vxdp_gmem *mem);
int vxdp_vq_new(struct vxdp_vq **out, struct vxdp_gmem *mem, uint32_t size, uint64_t desc,
                uint64_t avail, uint64_t used, uint32_t flags, uint16_t start_idx,
                const char *name, char *err, size_t errlen);
void vxdp_vq_free(struct vxdp_vq *vq);
void vxdp_vq_get_state(const struct vxdp_vq *vq, struct vxdp_vq_state *st);
int vxdp_vq_broken(const struct vxdp_vq *vq);
int vxdp_vq_set_state(struct vxdp_vq *vq, const struct vxdp_vq_state *st, char *err,
                      size_t errlen);
int vxdp_vq_pending(struct vxdp_vq *vq, char *err, size_t errlen);
int vxdp_vq_pop(struct vxdp_vq *vq, struct vxdp_vq_chain *chain, struct vxdp_vq_seg *segs,
                uint32_t cap, char *err, size_t errlen);
int vxdp_vq_push(struct vxdp_vq *vq, const uint32_t *heads, const uint32_t *lens, uint32_t n,
                 char *err, size_t errlen);
int vxdp_vq_should_interrupt(struct vxdp_vq *vq);
int vxdp_vq_enable_notifications(struct vxdp_vq *vq, char *err, size_t errlen);
void vxdp_vq_disable_notifications(struct vxdp_vq *vq);
int vxdp_vq_add(struct vxdp_vq *vq, const struct vxdp_vq_seg *segs, uint32_t n, char *err,
                size_t errlen);
int vxdp_vq_publish(struct vxdp_vq *vq);
int vxdp_vq_reap(struct vxdp_vq *vq, uint32_t *ids, uint32_t *lens, uint32_t cap, char *err,
                 size_t errlen);
int vxdp_vq_enable_interrupts(struct vxdp_vq *vq, char *err, size_t errlen);
void vxdp_vq_disable_interrupts(struct vxdp_vq *vq);
/* ---- the datapath: host ports, guest ports, bursts (datapath.c) ---- */
struct vxdp_switch;
struct vxdp_port;
struct vxdp_gport;

struct vxdp_burst {             /* frames back to back in buf, one length each */
    uint8_t *buf;
    size_t cap;                 /* bytes of buf */
    uint32_t *len;
    uint32_t max;               /* slots in len */
    uint32_t count;             /* in: frames given; out: frames written */
    size_t used;                /* out: bytes written */
};

struct vxdp_port_stats {        /* one host port: its rx queue, its tx queue, its XDP program */
    uint64_t rx_packets, rx_bytes;          /* wire frames offered to the port */
    uint64_t xdp_aborted, xdp_drop, xdp_pass, xdp_tx, xdp_redirect;
    uint64_t xdp_invalid;                   /* unknown action, dropped as ABORTED */
    uint64_t xdp_fault;                     /* run stopped by the core, dropped as ABORTED */
    uint64_t guest_packets, guest_bytes;    /* frames written into the guest's rx ring */
    uint64_t guest_buffers;                 /* rx chains those frames used */
    uint64_t redirect_in;                   /* frames other ports redirected to this guest */
    uint64_t wire_packets, wire_bytes;      /* frames into the wire out burst */
    uint64_t tx_packets, tx_bytes;          /* guest tx chains turned into frames */
    uint64_t drop_no_buffer;                /* guest posted no (or too few) rx buffers */
    uint64_t drop_small_buffer;             /* rx buffer below the header, or frame too big */
    uint64_t drop_fragmented;               /* frame needs > VXDP_RX_MAX_BUFS/SEGS buffers */
    uint64_t drop_runt, drop_oversize, drop_mtu;   /* frames into the guest */
    uint64_t drop_redirect;                 /* REDIRECT to an unknown ifindex */
    uint64_t drop_wire_full;                /* wire out burst full */
    uint64_t drop_ring_broken;              /* the queue refused a hostile ring */
    uint64_t drop_tx_header;                /* tx header breaking §5.1.6.2.1 */
    uint64_t drop_tx_oversize;              /* tx frame past VXDP_DP_MAX_FRAME, or the wire */
    uint64_t drop_link_down;                /* redirected here while the carrier was off */
    uint64_t tx_num_buffers;                /* tx headers with num_buffers != 0, sent anyway:
                                             * the field means nothing on transmit (below) */
    uint64_t irq_sent, irq_suppressed;
    /* the program the guest offloaded, run on every frame into the guest */
    uint64_t off_aborted, off_drop, off_pass, off_tx, off_redirect, off_invalid, off_fault;
};

struct vxdp_gport_stats {       /* one guest port (driver-mode XDP) */
    uint64_t rx_packets, rx_bytes;          /* frames reaped from the rx ring */
    uint64_t xdp_aborted, xdp_drop, xdp_pass, xdp_tx, xdp_redirect, xdp_invalid, xdp_fault;
    uint64_t pass_packets, pass_bytes;      /* frames handed up */
    uint64_t tx_packets, tx_bytes;          /* frames posted on the tx ring (incl. XDP_TX) */
    uint64_t rx_refilled;                   /* rx buffers posted */
    uint64_t drop_bad_len, drop_bad_num_buffers, drop_overrun, drop_oversize;
    uint64_t drop_redirect, drop_tx_full, drop_pass_full, drop_ring_broken;
};

/* One guest in a switch's table (switch.c): the switch forwards by destination MAC. */
struct vxdp_switch_guest {
    uint8_t mac[6];
    uint8_t flood;              /* live: broadcast, multicast and unknown unicast reach it */
    uint8_t wait;               /* the pump waits for its receive room */
    struct vxdp_port *port;     /* the port its frames go to; NULL: the edge delivers them */
};

/* Frames for guests the edge delivers (no port in the table): frame i of the input (a
 * burst's, or a pump source's index) for guest[i] of the table. */
struct vxdp_switch_edge {
    uint32_t *frame;
    uint32_t *guest;
    uint32_t max;
    uint32_t count;             /* out */
};

/* Frames the pump takes without asking the edge: `count` frames packed in `buf`. */
struct vxdp_wire_src {
    const uint8_t *buf;
    const uint32_t *len;
    uint32_t count;
    uint32_t at;                /* in/out: the next frame */
    uint64_t offset;            /* in/out: its byte offset in buf */
    uint32_t cycle;             /* 1: after the last frame comes the first again */
    uint64_t limit;             /* frames this call may take */
    uint64_t taken, taken_bytes;   /* out */
};

struct vxdp_pump {              /* one vxdp_switch_pump call */
    uint32_t round_max;         /* frames a round at most */
    uint64_t turn_ns;           /* rounds run back to back for this long */
    uint64_t spin_ns;           /* how long a round waits for receive room */
    uint32_t rounds;            /* out */
    uint32_t why;               /* out: VXDP_PUMP_* */
};

struct vxdp_tx_turn {           /* one vxdp_switch_tx_turn call */
    uint32_t lap_max;           /* chains a lap at most */
    uint32_t call_max;          /* chains one vxdp_switch_tx call of a lap at most */
    uint64_t turn_ns;           /* laps run back to back for this long */
    uint64_t spin_ns;           /* how long the ring is polled when it runs dry */
    uint32_t laps;              /* out */
    uint32_t chains;            /* out: chains completed */
    uint32_t why;               /* out: VXDP_TXT_* */
};

int vxdp_switch_new(struct vxdp_switch **out, uint32_t wire_ifindex, char *err, size_t errlen);
void vxdp_switch_free(struct vxdp_switch *sw);
int vxdp_switch_set_guests(struct vxdp_switch *sw, const struct vxdp_switch_guest *guests,
                           uint32_t n, char *err, size_t errlen);
int vxdp_switch_rx(struct vxdp_switch *sw, const struct vxdp_burst *in,
                   struct vxdp_burst *wire, struct vxdp_switch_edge *edge, char *err,
                   size_t errlen);
int vxdp_switch_tx(struct vxdp_switch *sw, struct vxdp_port *from, uint32_t budget,
                   struct vxdp_burst *out, uint32_t *dest, char *err, size_t errlen);
int vxdp_switch_tx_turn(struct vxdp_switch *sw, struct vxdp_port *from,
                        struct vxdp_tx_turn *turn, struct vxdp_burst *out, uint32_t *dest,
                        char *err, size_t errlen);
int vxdp_switch_room(struct vxdp_switch *sw, uint32_t limit);
int vxdp_switch_pump(struct vxdp_switch *sw, struct vxdp_wire_src *src,
                     struct vxdp_pump *pump, struct vxdp_burst *wire,
                     struct vxdp_switch_edge *edge, char *err, size_t errlen);
int vxdp_switch_events(struct vxdp_switch *sw, uint32_t *ifindex, uint32_t *events,
                       uint32_t cap);
int vxdp_port_new(struct vxdp_port **out, struct vxdp_switch *sw, uint32_t ifindex,
                  struct vxdp_vq *rx, struct vxdp_vq *tx, uint64_t features, uint32_t mtu,
                  char *err, size_t errlen);
void vxdp_port_free(struct vxdp_port *port);
int vxdp_port_attach(struct vxdp_port *port, struct vxdp_prog *prog, struct vxdp_env *env,
                     char *err, size_t errlen);
int vxdp_port_attach_offload(struct vxdp_port *port, struct vxdp_prog *prog,
                             struct vxdp_env *env, char *err, size_t errlen);
size_t vxdp_port_offload_fault(const struct vxdp_port *port, char *buf, size_t cap);
int vxdp_port_rx_burst(struct vxdp_port *port, const struct vxdp_burst *in,
                       struct vxdp_burst *wire, char *err, size_t errlen);
int vxdp_port_tx_burst(struct vxdp_port *port, uint32_t budget, struct vxdp_burst *wire,
                       char *err, size_t errlen);
/* frames another port's program redirected here from outside the core (a port the
 * Python side serves): past the host-attached program, through the offloaded one, as
 * the switch's own redirects go (one hop: a second redirect is dropped) */
int vxdp_port_redirect_in(struct vxdp_port *port, const struct vxdp_burst *in,
                          struct vxdp_burst *wire, char *err, size_t errlen);
int vxdp_port_irq(struct vxdp_port *port);
/* the guest's carrier (the operator's link up/down, as QEMU's): while it is off, frames
 * other ports redirect to this one are dropped (drop_link_down); the switch keeps wire
 * and guest traffic off a link-down port by its table */
void vxdp_port_set_carrier(struct vxdp_port *port, int up);
int vxdp_port_rx_room(struct vxdp_port *port);
int vxdp_port_release(struct vxdp_port *port);
void vxdp_port_get_stats(const struct vxdp_port *port, struct vxdp_port_stats *st);
size_t vxdp_port_last_fault(const struct vxdp_port *port, char *buf, size_t cap);

int vxdp_gport_new(struct vxdp_gport **out, struct vxdp_vq *rx, struct vxdp_vq *tx,
                   uint64_t features, uint64_t rx_pool, uint32_t rx_bufs,
                   uint32_t rx_buf_size, uint64_t tx_pool, uint32_t tx_bufs,
                   uint32_t tx_buf_size, char *err, size_t errlen);
void vxdp_gport_free(struct vxdp_gport *gp);
int vxdp_gport_attach(struct vxdp_gport *gp, struct vxdp_prog *prog, struct vxdp_env *env,
                      char *err, size_t errlen);
int vxdp_gport_refill(struct vxdp_gport *gp, uint32_t *kicks);
int vxdp_gport_rx_burst(struct vxdp_gport *gp, uint32_t budget, struct vxdp_burst *pass,
                        uint32_t *kicks, char *err, size_t errlen);
int vxdp_gport_tx_burst(struct vxdp_gport *gp, const struct vxdp_burst *in, uint32_t *kicks,
                        char *err, size_t errlen);
void vxdp_gport_get_stats(const struct vxdp_gport *gp, struct vxdp_gport_stats *st);
size_t vxdp_gport_last_fault(const struct vxdp_gport *gp, char *buf, size_t cap);
int vxdp_gport_interrupts(struct vxdp_gport *gp, uint32_t queue, int enable, char *err,
                          size_t errlen);
int vxdp_gport_inflight(const struct vxdp_gport *gp, uint32_t queue, uint32_t *heads,
                        uint64_t *gpa, uint32_t cap, char *err, size_t errlen);
/* ---- a front-end's memory and fds: the SIGBUS guard, guarded fd i/o (guard.c) ---- */
int vxdp_guard_install(char *err, size_t errlen);
int vxdp_guard_add(void *start, uint64_t len, int notify_fd, char *err, size_t errlen);
int vxdp_guard_remove(int slot);
int vxdp_guard_lost(int slot, uint64_t *fault);
int vxdp_fd_signal(int fd, char *err, size_t errlen);
int vxdp_fd_drain(int fd, char *err, size_t errlen);
/* ---- the bench's placement probe: a cache line's round trip between two CPUs (xcpu.c) */
int vxdp_xcpu_rtt(uint32_t cpu_a, uint32_t cpu_b, uint32_t rounds, uint64_t timeout_ns,
                  double *ns, char *err, size_t errlen);
/* CDEF-END */

#endif
