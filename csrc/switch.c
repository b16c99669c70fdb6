/*
 * The host switch: frames forwarded between the wire and the guests' ports by destination
 * MAC, each burst in one call, and the wire pump's rounds.
 *
 * Theory of operation
 *   The edge gives the switch its table (vxdp_switch_set_guests): one entry a guest, in
 *   the host's order, with the guest's MAC, whether it is live (flood) and whether the
 *   pump waits for its receive buffers (wait), and the port that takes its frames, or
 *   none when the edge delivers them itself (a guest on the device model, with its link
 *   down, with several queue pairs in use...).  It is a learning-free L2 switch on the
 *   configured MACs:
 *     from the wire   a frame addressed to a guest's MAC goes to that guest (live or not:
 *                     the edge counts what a guest that is not there drops), any other
 *                     (broadcast, multicast, unknown unicast) to every live guest;
 *     from a guest    a frame addressed to another guest's MAC goes to that guest, any
 *                     other to the wire (guests' broadcasts are not flooded to guests).
 *   A frame for a guest with a port goes through that port's receive path (the
 *   host-attached program, the offloaded one, the guest's receive ring: datapath.c)
 *   within the call; one for a guest without a port is left to the edge (its index and
 *   the guest in `edge`, or the frame itself in the out burst, marked with the guest).
 *   The guests are served in table order, each with all of its frames in their order of
 *   arrival, one receive burst each: what the edge's own per-frame switch did, so both
 *   give the same destinations, the same wire order and the same counters.
 *
 *   The pump (vxdp_switch_pump) is the wire's round in C: room (what every guest it
 *   waits for has receive buffers for), up to `round_max` frames from a packed source
 *   switched as above, used idx published, and again, back to back, for `turn_ns`.  It
 *   waits at most `spin_ns` for room, polling the rings (vhost-net's busy-poll), then
 *   leaves the wait to the edge (a receive kick).  It stops early for anything only the
 *   edge can do: interrupts due, a ring newly broken, frames for guests without a port,
 *   a wire burst that could not hold another round.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vm_int.h"
#include "vring_int.h"
#include "datapath_int.h"

#define DP_FLOOD (-1)   /* every live guest */
#define DP_WIRE (-2)    /* the wire (from a guest) */
#define DP_NONE (-3)    /* nobody: addressed to its own sender's MAC held by another */
/* the most a frame can grow in an XDP run: headroom and tailroom both taken */
#define XDP_GROWTH (VXDP_PAGE_SIZE - VXDP_XDP_MAX_DATA)

/* Six bytes of MAC as one integer, to compare in one instruction. */
static inline uint64_t mac_key(const uint8_t *p)
{
    uint32_t lo;
    uint16_t hi;
    memcpy(&lo, p, 4);
    memcpy(&hi, p + 4, 2);
    return lo | (uint64_t)hi << 32;
}

int vxdp_switch_set_guests(struct vxdp_switch *sw, const struct vxdp_switch_guest *guests,
                           uint32_t n, char *err, size_t errlen)
{
    if (n > VXDP_SWITCH_MAX_PORTS)
        return vxdp_errf(err, errlen, -E2BIG, "%u guests: a switch has at most %u", n,
                         VXDP_SWITCH_MAX_PORTS);
    for (uint32_t i = 0; i < n; i++) {
        const struct vxdp_port *p = guests[i].port;
        bool mine = !p;
        for (uint32_t k = 0; k < sw->nports && !mine; k++)
            mine = sw->ports[k] == p;
        if (!mine)
            return vxdp_errf(err, errlen, -EINVAL, "guest %u: its port is not on this "
                             "switch", i);
    }
    for (uint32_t i = 0; i < n; i++) {
        struct dp_guest *g = &sw->guests[i];
        memcpy(g->mac, guests[i].mac, 6);
        g->key = mac_key(g->mac);
        g->flood = guests[i].flood;
        g->wait = guests[i].wait;
        g->port = guests[i].port;
    }
    sw->nguests = n;
    return 0;
}

void dp_switch_forget(struct vxdp_switch *sw, const struct vxdp_port *p)
{
    for (uint32_t i = 0; i < sw->nguests; i++)
        if (sw->guests[i].port == p)
            sw->guests[i].port = NULL;
}

/* The guest a MAC names: the last entry that has it (the edge's table is by MAC). */
static int32_t by_mac(const struct vxdp_switch *sw, const uint8_t *frame, uint32_t len)
{
    uint64_t key;
    if (len < 6)
        return -1;
    key = mac_key(frame);
    for (int32_t i = (int32_t)sw->nguests - 1; i >= 0; i--)
        if (sw->guests[i].key == key)
            return i;
    return -1;
}

static int32_t rx_dest(const struct vxdp_switch *sw, const uint8_t *frame, uint32_t len)
{
    int32_t g = by_mac(sw, frame, len);
    return g >= 0 ? g : DP_FLOOD;
}

/* A frame guest `from` sent: another guest's, the wire's, or nobody's. */
static int32_t tx_dest(const struct vxdp_switch *sw, int32_t from, const uint8_t *frame,
                       uint32_t len)
{
    int32_t g = by_mac(sw, frame, len);
    if (g < 0)
        return DP_WIRE;
    if (g != from)
        return g;
    /* its own MAC: to the wire, unless another guest has that MAC too (then the table
     * names the sender, which is not sent its own frames) */
    for (uint32_t i = 0; i < sw->nguests; i++)
        if ((int32_t)i != from && sw->guests[i].key == sw->guests[g].key)
            return DP_NONE;
    return DP_WIRE;
}

/* The frames of each guest, in order, without scanning the whole burst once a guest:
 * sw->link chains the frames of one destination (a guest, or DP_FLOOD), from
 * sw->head[g] / sw->flood_head; `walk` merges a guest's own chain with the flood chain
 * (when it takes floods) in frame order.  DP_END ends a chain. */
#define DP_END UINT16_MAX

static void chain(struct vxdp_switch *sw, uint32_t n)
{
    uint16_t tail[VXDP_SWITCH_MAX_PORTS], flood_tail = DP_END;
    for (uint32_t g = 0; g < sw->nguests; g++)
        sw->head[g] = tail[g] = DP_END;
    sw->flood_head = DP_END;
    for (uint32_t i = 0; i < n; i++) {
        int32_t d = sw->dest[i];
        sw->link[i] = DP_END;
        if (d >= 0) {
            if (tail[d] == DP_END)
                sw->head[d] = (uint16_t)i;
            else
                sw->link[tail[d]] = (uint16_t)i;
            tail[d] = (uint16_t)i;
        } else if (d == DP_FLOOD) {
            if (flood_tail == DP_END)
                sw->flood_head = (uint16_t)i;
            else
                sw->link[flood_tail] = (uint16_t)i;
            flood_tail = (uint16_t)i;
        }
    }
}

/* The next frame of guest g's merged chain: *own and *flood advance. */
static uint32_t walk(const struct vxdp_switch *sw, uint16_t *own, uint16_t *flood)
{
    uint16_t i;
    if (*flood == DP_END || (*own != DP_END && *own < *flood)) {
        i = *own;
        if (i != DP_END)
            *own = sw->link[i];
    } else {
        i = *flood;
        *flood = sw->link[i];
    }
    return i;
}

/* The `n` frames of sw->frame/flen/dest to their guests, in table order (see the top).
 * Frames for guests without a port go to `edge` as base + their index. */
static void deliver(struct vxdp_switch *sw, uint32_t n, struct vxdp_burst *wire,
                    struct vxdp_switch_edge *edge, uint32_t base)
{
    chain(sw, n);
    for (uint32_t g = 0; g < sw->nguests; g++) {
        struct dp_guest *e = &sw->guests[g];
        uint16_t own = sw->head[g], flood = e->flood ? sw->flood_head : DP_END;
        bool begun = false;
        for (uint32_t i; (i = walk(sw, &own, &flood)) != DP_END;) {
            if (!e->port) {
                if (edge->count < edge->max) {
                    edge->frame[edge->count] = base + i;
                    edge->guest[edge->count++] = g;
                }
                continue;
            }
            if (!begun) {
                dp_rx_begin(e->port);
                begun = true;
            }
            dp_rx_frame(e->port, wire, sw->frame[i], sw->flen[i]);
        }
        if (begun)
            dp_rx_end(e->port);
    }
}

static int edge_check(const struct vxdp_switch *sw, const struct vxdp_switch_edge *edge,
                      uint32_t frames, char *err, size_t errlen)
{
    if (!edge || (edge->max && (!edge->frame || !edge->guest)))
        return vxdp_errf(err, errlen, -EINVAL, "switch call without an edge list");
    if ((uint64_t)edge->max < (uint64_t)frames * sw->nguests)
        return vxdp_errf(err, errlen, -EINVAL, "edge list of %u for %u frames to %u guests",
                         edge->max, frames, sw->nguests);
    return 0;
}

int vxdp_switch_rx(struct vxdp_switch *sw, const struct vxdp_burst *in,
                   struct vxdp_burst *wire, struct vxdp_switch_edge *edge, char *err,
                   size_t errlen)
{
    const uint8_t *pkt;
    int rc;

    if ((rc = dp_burst_check(in, false, "rx", err, errlen)) ||
        (rc = dp_burst_check(wire, true, "wire", err, errlen)))
        return rc;
    if (in->count > VXDP_BURST_MAX)
        return vxdp_errf(err, errlen, -E2BIG, "%u frames: a switch call takes at most %u",
                         in->count, VXDP_BURST_MAX);
    if ((rc = edge_check(sw, edge, in->count, err, errlen)))
        return rc;
    edge->count = 0;
    pkt = in->buf;
    for (uint32_t i = 0; i < in->count; pkt += in->len[i], i++) {
        sw->frame[i] = pkt;
        sw->flen[i] = in->len[i];
        sw->dest[i] = rx_dest(sw, pkt, in->len[i]);
    }
    deliver(sw, in->count, wire, edge, 0);
    return (int)in->count;
}

/* -------------------------------------------------------------- from a guest */

static int32_t guest_of(const struct vxdp_switch *sw, const struct vxdp_port *p)
{
    for (uint32_t i = 0; i < sw->nguests; i++)
        if (sw->guests[i].port == p)
            return (int32_t)i;
    return -1;
}

static void out_put(struct vxdp_port *from, struct vxdp_burst *out, uint32_t *dest,
                    const uint8_t *frame, uint32_t len, uint32_t mark)
{
    uint32_t at = out->count;
    if (!dp_burst_put(out, frame, len)) {
        from->st.drop_wire_full++;
        return;
    }
    dest[at] = mark;
}

int vxdp_switch_tx(struct vxdp_switch *sw, struct vxdp_port *from, uint32_t budget,
                   struct vxdp_burst *out, uint32_t *dest, char *err, size_t errlen)
{
    struct vxdp_burst stage;
    uint32_t first = out ? out->count : 0;
    int32_t self;
    bool others = false;
    int done, rc;

    if ((rc = dp_burst_check(out, true, "out", err, errlen)))
        return rc;
    if (!from || from->sw != sw)
        return vxdp_errf(err, errlen, -EINVAL, "the sending port is not on this switch");
    self = guest_of(sw, from);
    for (uint32_t i = 0; i < sw->nguests && !others; i++)
        others = (int32_t)i != self;
    if (!others) {
        /* nobody to address but the wire: straight into the out burst */
        done = dp_tx_take(from, budget, out);
        for (uint32_t i = first; i < out->count; i++)
            dest[i] = 0;
        return done;
    }
    /* Staged first: the frames for other guests go through their ports, then those for
     * the wire follow their outputs, as the edge's switch sends them. */
    stage.cap = out->cap - out->used;
    if (sw->stage_cap < stage.cap) {
        uint8_t *grown = realloc(sw->stage, stage.cap);
        if (!grown)
            return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
        sw->stage = grown;
        sw->stage_cap = stage.cap;
    }
    stage.buf = sw->stage;
    stage.len = sw->flen;
    stage.max = out->max - out->count < VXDP_BURST_MAX ? out->max - out->count
                                                        : VXDP_BURST_MAX;
    stage.count = 0;
    stage.used = 0;
    done = dp_tx_take(from, budget, &stage);
    {
        const uint8_t *pkt = stage.buf;
        for (uint32_t i = 0; i < stage.count; pkt += stage.len[i], i++) {
            sw->frame[i] = pkt;
            sw->dest[i] = tx_dest(sw, self, pkt, stage.len[i]);
        }
    }
    /* guests with a port: their receive paths, here; without: the edge's, marked */
    chain(sw, stage.count);
    for (uint32_t g = 0; g < sw->nguests; g++) {
        struct dp_guest *e = &sw->guests[g];
        uint16_t own = sw->head[g], none = DP_END;
        bool begun = false;
        for (uint32_t i; (i = walk(sw, &own, &none)) != DP_END;) {
            if (!e->port) {
                out_put(from, out, dest, sw->frame[i], sw->flen[i], g + 1);
                continue;
            }
            if (!begun) {
                dp_rx_begin(e->port);
                begun = true;
            }
            {
                uint32_t before = out->count;
                dp_rx_frame(e->port, out, sw->frame[i], sw->flen[i]);
                while (before < out->count)
                    dest[before++] = 0;   /* what its programs sent: the wire */
            }
        }
        if (begun)
            dp_rx_end(e->port);
    }
    for (uint32_t i = 0; i < stage.count; i++)
        if (sw->dest[i] == DP_WIRE)
            out_put(from, out, dest, sw->frame[i], sw->flen[i], 0);
    return done;
}

/* -------------------------------------------------------------- room, events, the pump */

int vxdp_switch_room(struct vxdp_switch *sw, uint32_t limit)
{
    uint32_t room = limit;
    for (uint32_t i = 0; i < sw->nguests && room; i++) {
        const struct dp_guest *g = &sw->guests[i];
        int have;
        if (!g->wait || !g->port)
            continue;
        have = vxdp_port_rx_room(g->port);
        if (have >= 0 && (uint32_t)have < room)   /* broken: what it is given drops */
            room = (uint32_t)have;
    }
    return (int)room;
}

static uint32_t collect(struct vxdp_switch *sw)
{
    uint32_t any = 0;
    for (uint32_t i = 0; i < sw->nports; i++)
        any |= dp_port_collect(sw->ports[i]);
    return any;
}

int vxdp_switch_events(struct vxdp_switch *sw, uint32_t *ifindex, uint32_t *events,
                       uint32_t cap)
{
    uint32_t n = 0;
    collect(sw);
    for (uint32_t i = 0; i < sw->nports && n < cap; i++) {
        struct vxdp_port *p = sw->ports[i];
        if (!p->events)
            continue;
        ifindex[n] = p->ifindex;
        events[n++] = p->events;
        p->events = 0;
    }
    return (int)n;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Ports whose programs may send frames to the wire. */
static uint32_t senders(const struct vxdp_switch *sw)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < sw->nports; i++)
        n += sw->ports[i]->xdp.prog || sw->ports[i]->offload.prog;
    return n;
}

int vxdp_switch_pump(struct vxdp_switch *sw, struct vxdp_wire_src *src,
                     struct vxdp_pump *pump, struct vxdp_burst *wire,
                     struct vxdp_switch_edge *edge, char *err, size_t errlen)
{
    uint64_t start, deadline;
    uint32_t max;
    int rc;

    if ((rc = dp_burst_check(wire, true, "wire", err, errlen)))
        return rc;
    if (!src || !pump || (src->count && (!src->buf || !src->len)))
        return vxdp_errf(err, errlen, -EINVAL, "pump without a source");
    max = pump->round_max < VXDP_BURST_MAX ? pump->round_max : VXDP_BURST_MAX;
    if (!max || src->at > src->count)
        return vxdp_errf(err, errlen, -EINVAL, "pump of %u frames a round from frame %u "
                         "of %u", pump->round_max, src->at, src->count);
    if ((rc = edge_check(sw, edge, max, err, errlen)))
        return rc;
    edge->count = 0;
    src->taken = src->taken_bytes = 0;
    pump->rounds = 0;
    start = now_ns();
    deadline = start + pump->turn_ns;
    for (;;) {
        uint32_t room, n, grow = senders(sw);
        uint64_t bytes = 0, worst = 0;
        const uint8_t *pkt;

        if (src->taken >= src->limit) {
            pump->why = VXDP_PUMP_END;
            break;
        }
        if (src->at == src->count) {
            if (!src->cycle || !src->count) {
                pump->why = VXDP_PUMP_END;
                break;
            }
            src->at = 0;
            src->offset = 0;
        }
        room = (uint32_t)vxdp_switch_room(sw, max);
        if (!room) {
            uint64_t until = now_ns() + pump->spin_ns;
            while (!(room = (uint32_t)vxdp_switch_room(sw, max)) && now_ns() < until)
                relax();
            if (!room) {
                pump->why = VXDP_PUMP_NO_ROOM;
                break;
            }
        }
        n = room;
        if (n > src->count - src->at)
            n = src->count - src->at;
        if ((uint64_t)n > src->limit - src->taken)
            n = (uint32_t)(src->limit - src->taken);
        pkt = src->buf + src->offset;
        for (uint32_t i = 0; i < n; pkt += src->len[src->at + i], i++) {
            uint32_t len = src->len[src->at + i];
            sw->frame[i] = pkt;
            sw->flen[i] = len;
            bytes += len;
            worst += len + XDP_GROWTH < VXDP_XDP_MAX_OUT ? len + XDP_GROWTH
                                                          : VXDP_XDP_MAX_OUT;
        }
        /* the wire burst holds whatever the programs may send out of this round */
        if (grow && wire->count &&
            ((uint64_t)wire->max - wire->count < (uint64_t)n * grow ||
             wire->cap - wire->used < worst * grow)) {
            pump->why = VXDP_PUMP_EDGE;
            break;
        }
        for (uint32_t i = 0; i < n; i++)
            sw->dest[i] = rx_dest(sw, sw->frame[i], sw->flen[i]);
        deliver(sw, n, wire, edge, src->at);
        src->at += n;
        src->offset += bytes;
        src->taken += n;
        src->taken_bytes += bytes;
        pump->rounds++;
        if (collect(sw) || edge->count) {
            pump->why = VXDP_PUMP_EDGE;
            break;
        }
        if (now_ns() >= deadline) {
            pump->why = VXDP_PUMP_TURN;
            break;
        }
    }
    return (int)pump->rounds;
}

/* -------------------------------------------------------------- a sender's turn */

/* How often a dry transmit ring is looked at while the turn polls it, ns.  Each look reads
 * the avail idx, whose line the driver writes on every publish: read back to back, it
 * bounced between the two CPUs and slowed the driver refilling the ring; the edge's
 * Python loop looked about every 0.5 us. */
#define TX_POLL_NS 500

/* Chains the sender's transmit ring holds now (avail idx read afresh); 0 when broken. */
static uint32_t tx_pending(struct vxdp_port *p)
{
    int rc = p->tx ? vxdp_vq_pending(p->tx, NULL, 0) : 0;
    return rc > 0 ? (uint32_t)rc : 0;
}

/* A transmit kick's work in one call: laps of vxdp_switch_tx back to back, as the edge's
 * handler ran them one call a lap (vhost-net's handle_tx).  A lap is up to `lap_max`
 * chains in calls of up to `call_max`, ending early when a call takes none; after each,
 * the ports' events are collected (interrupt decisions, rings broken) as the edge did
 * after each lap.  It stops for what only the edge can do (events, frames for guests
 * without a port), when the turn is over, when the ring stays dry for `spin_ns`, or when
 * `out` cannot take the next chain.  Frames for the wire accumulate in `out` (with
 * `dest`) over the laps, in order; while some port's program may send frames to the wire
 * a call starts only with `out` empty, so that what a program sends always finds room,
 * as it did with one fresh burst a call. */
int vxdp_switch_tx_turn(struct vxdp_switch *sw, struct vxdp_port *from,
                        struct vxdp_tx_turn *turn, struct vxdp_burst *out, uint32_t *dest,
                        char *err, size_t errlen)
{
    uint64_t deadline;
    int rc;

    if (!turn || !turn->lap_max || !turn->call_max)
        return vxdp_errf(err, errlen, -EINVAL, "a transmit turn of laps of at least one "
                         "chain");
    if ((rc = dp_burst_check(out, true, "out", err, errlen)))
        return rc;
    if (!from || from->sw != sw)
        return vxdp_errf(err, errlen, -EINVAL, "the sending port is not on this switch");
    turn->laps = turn->chains = 0;
    deadline = now_ns() + turn->turn_ns;
    for (;;) {
        uint32_t budget = turn->lap_max, lap = 0, first = out->count, pending;
        bool edge = false, may_send = senders(sw) != 0;

        while (budget && !(may_send && out->count)) {
            int n = vxdp_switch_tx(sw, from, budget < turn->call_max ? budget
                                                                     : turn->call_max,
                                   out, dest, err, errlen);
            if (n < 0)
                return n;
            lap += (uint32_t)n;
            budget -= (uint32_t)n;
            if (!n)
                break;
        }
        turn->laps++;
        turn->chains += lap;
        for (uint32_t i = first; i < out->count && !edge; i++)
            edge = dest[i] != 0;
        if (collect(sw) || edge) {
            turn->why = VXDP_TXT_EDGE;
            break;
        }
        if (now_ns() >= deadline) {
            turn->why = VXDP_TXT_TURN;
            break;
        }
        pending = tx_pending(from);
        if (!pending) {
            uint64_t until = now_ns() + turn->spin_ns;
            for (;;) {
                uint64_t t = now_ns(), next = t + TX_POLL_NS;
                if ((pending = tx_pending(from)) || t >= until)
                    break;
                do
                    relax();
                while (now_ns() < next);
            }
            if (!pending) {
                turn->why = VXDP_TXT_DRY;
                break;
            }
        }
        if (!lap && out->count) {
            /* chains wait and the out burst cannot take them: the edge empties it */
            turn->why = VXDP_TXT_FULL;
            break;
        }
    }
    return (int)turn->laps;
}
