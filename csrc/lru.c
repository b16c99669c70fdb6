/*
 * The kernel's common LRU (kernel/bpf/bpf_lru_list.c), node for node, so that an LRU hash
 * map here evicts exactly the keys the kernel evicts.
 *
 * Theory of operation.  Every element is a node on one list: the global ACTIVE, INACTIVE
 * or FREE list, or a per-CPU local FREE or PENDING list.  A CPU takes new nodes from its
 * local FREE list; when that is empty it refills it with `target_free` nodes from the
 * global FREE list, first flushing its PENDING nodes (the ones it handed out since) into
 * ACTIVE (referenced) or INACTIVE, rotating the lists, and, when the global FREE list runs
 * dry, shrinking the INACTIVE list from its tail: that is where eviction happens, and it
 * evicts up to `target_free` keys at once.  Lookups by programs set a node's ref bit,
 * which buys it a move to ACTIVE instead of eviction.  When no CPU list can give a node,
 * one is stolen from a local list, round robin from `next_steal`.
 *
 * With BPF_F_NO_COMMON_LRU each CPU owns a whole ACTIVE/INACTIVE/FREE set instead, holding
 * max_entries / ncpus nodes; a new node goes straight to that CPU's INACTIVE list, and an
 * empty FREE list is refilled by shrinking 4 nodes (PERCPU_FREE_TARGET).
 *
 * Lists are circular and index-linked: nodes are 0..n-1, list heads follow them.
 */
#include <stdlib.h>

#include "lru.h"

#define LOCAL_FREE_TARGET 128u   /* most nodes moved to a local list at once */
#define PERCPU_FREE_TARGET 4u    /* nodes shrunk at once on a per-CPU LRU */

enum { T_ACTIVE, T_INACTIVE, T_FREE, T_LOCAL_FREE, T_LOCAL_PENDING };

struct lnode {
    uint32_t prev, next;
    uint32_t cpu;
    uint8_t type, ref;
};

/* one ACTIVE/INACTIVE/FREE set: the common one, or one per CPU (NO_COMMON_LRU) */
struct lset {
    uint32_t heads[3];
    uint32_t counts[2];              /* ACTIVE, INACTIVE */
    uint32_t next_inactive_rotation; /* a node of INACTIVE, or its head */
};

struct vxdp_lru {
    uint32_t nr, ncpus, target_free, nr_scans;
    bool percpu;
    struct lset *sets;               /* 1, or ncpus when percpu */
    uint32_t *next_steal;            /* per CPU (common LRU) */
    vxdp_lru_del_fn del;
    void *arg;
    struct lnode *n;                 /* nr nodes, then the heads: 3 per set, 2 per CPU */
};

static uint32_t local_head(const struct vxdp_lru *l, uint32_t cpu, uint32_t type)
{
    uint32_t nsets = l->percpu ? l->ncpus : 1;
    return l->nr + 3 * nsets + 2 * cpu + (type - T_LOCAL_FREE);
}

static void list_del(struct vxdp_lru *l, uint32_t x)
{
    l->n[l->n[x].prev].next = l->n[x].next;
    l->n[l->n[x].next].prev = l->n[x].prev;
}

static void list_add(struct vxdp_lru *l, uint32_t x, uint32_t h)   /* after the head */
{
    uint32_t first = l->n[h].next;
    l->n[x].prev = h;
    l->n[x].next = first;
    l->n[first].prev = x;
    l->n[h].next = x;
}

static void list_move(struct vxdp_lru *l, uint32_t x, uint32_t h)
{
    list_del(l, x);
    list_add(l, x, h);
}

static bool list_empty(const struct vxdp_lru *l, uint32_t h) { return l->n[h].next == h; }

static void count_inc(struct lset *S, uint8_t type)
{
    if (type < 2)
        S->counts[type]++;
}

static void count_dec(struct lset *S, uint8_t type)
{
    if (type < 2)
        S->counts[type]--;
}

/* a node of set S to a free list (S's own or a local one) */
static void move_to_free(struct vxdp_lru *l, struct lset *S, uint32_t x, uint32_t free_head,
                         uint8_t type)
{
    if (x == S->next_inactive_rotation)
        S->next_inactive_rotation = l->n[x].prev;
    count_dec(S, l->n[x].type);
    l->n[x].type = type;
    list_move(l, x, free_head);
}

/* a local-list node into a list of S */
static void move_in(struct vxdp_lru *l, struct lset *S, uint32_t x, uint8_t type)
{
    count_inc(S, type);
    l->n[x].type = type;
    l->n[x].ref = 0;
    list_move(l, x, S->heads[type]);
}

/* between or within the lists of S */
static void move(struct vxdp_lru *l, struct lset *S, uint32_t x, uint8_t type)
{
    if (l->n[x].type != type) {
        count_dec(S, l->n[x].type);
        count_inc(S, type);
        l->n[x].type = type;
    }
    l->n[x].ref = 0;
    if (x == S->next_inactive_rotation)
        S->next_inactive_rotation = l->n[x].prev;
    list_move(l, x, S->heads[type]);
}

/* from the tail of ACTIVE: referenced nodes go round again, the others to INACTIVE */
static void rotate_active(struct vxdp_lru *l, struct lset *S)
{
    uint32_t h = S->heads[T_ACTIVE], first = l->n[h].next, i = 0;
    for (uint32_t x = l->n[h].prev, prev; x != h; x = prev) {
        prev = l->n[x].prev;
        move(l, S, x, l->n[x].ref ? T_ACTIVE : T_INACTIVE);
        if (++i == l->nr_scans || x == first)
            break;
    }
}

/* from next_inactive_rotation backwards: referenced nodes are promoted to ACTIVE */
static void rotate_inactive(struct vxdp_lru *l, struct lset *S)
{
    uint32_t h = S->heads[T_INACTIVE], cur, last, next = h, i = 0;
    if (list_empty(l, h))
        return;
    last = l->n[S->next_inactive_rotation].next;
    if (last == h)
        last = l->n[last].next;
    cur = S->next_inactive_rotation;
    while (i < l->nr_scans) {
        if (cur == h) {
            cur = l->n[cur].prev;
            continue;
        }
        next = l->n[cur].prev;
        if (l->n[cur].ref)
            move(l, S, cur, T_ACTIVE);
        if (cur == last)
            break;
        cur = next;
        i++;
    }
    S->next_inactive_rotation = next;
}

static void rotate(struct vxdp_lru *l, struct lset *S)
{
    if (S->counts[T_INACTIVE] < S->counts[T_ACTIVE])
        rotate_active(l, S);
    rotate_inactive(l, S);
}

/* evict unreferenced nodes from the tail of INACTIVE into `free_head` */
static uint32_t shrink_inactive(struct vxdp_lru *l, struct lset *S, uint32_t want,
                                uint32_t free_head, uint8_t type)
{
    uint32_t h = S->heads[T_INACTIVE], done = 0, i = 0;
    for (uint32_t x = l->n[h].prev, prev; x != h; x = prev) {
        prev = l->n[x].prev;
        if (l->n[x].ref) {
            move(l, S, x, T_ACTIVE);
        } else if (l->del(l->arg, x)) {
            move_to_free(l, S, x, free_head, type);
            if (++done == want)
                break;
        }
        if (++i == l->nr_scans)
            break;
    }
    return done;
}

/* shrink_inactive, or else evict one node ignoring the ref bit (INACTIVE first) */
static uint32_t shrink(struct vxdp_lru *l, struct lset *S, uint32_t want, uint32_t free_head,
                       uint8_t type)
{
    uint32_t done = shrink_inactive(l, S, want, free_head, type), h;
    if (done)
        return done;
    h = list_empty(l, S->heads[T_INACTIVE]) ? S->heads[T_ACTIVE] : S->heads[T_INACTIVE];
    for (uint32_t x = l->n[h].prev, prev; x != h; x = prev) {
        prev = l->n[x].prev;
        if (l->del(l->arg, x)) {
            move_to_free(l, S, x, free_head, type);
            return 1;
        }
    }
    return 0;
}

static void flush_pending(struct vxdp_lru *l, struct lset *S, uint32_t cpu)
{
    uint32_t h = local_head(l, cpu, T_LOCAL_PENDING);
    for (uint32_t x = l->n[h].prev, prev; x != h; x = prev) {
        prev = l->n[x].prev;
        move_in(l, S, x, l->n[x].ref ? T_ACTIVE : T_INACTIVE);
    }
}

static void refill_local(struct vxdp_lru *l, uint32_t cpu)
{
    struct lset *S = &l->sets[0];
    uint32_t fh = S->heads[T_FREE], lf = local_head(l, cpu, T_LOCAL_FREE), nfree = 0;
    flush_pending(l, S, cpu);
    rotate(l, S);
    for (uint32_t x = l->n[fh].next, next; x != fh; x = next) {
        next = l->n[x].next;
        move_to_free(l, S, x, lf, T_LOCAL_FREE);
        if (++nfree == l->target_free)
            break;
    }
    if (nfree < l->target_free)
        shrink(l, S, l->target_free - nfree, lf, T_LOCAL_FREE);
}

static uint32_t pop_local_free(struct vxdp_lru *l, uint32_t cpu)
{
    uint32_t h = local_head(l, cpu, T_LOCAL_FREE), x = l->n[h].next;
    if (x == h)
        return VXDP_LRU_NIL;
    list_del(l, x);
    return x;
}

/* steal the oldest pending node, unreferenced ones first */
static uint32_t pop_local_pending(struct vxdp_lru *l, uint32_t cpu)
{
    uint32_t h = local_head(l, cpu, T_LOCAL_PENDING);
    for (int force = 0; force < 2; force++) {
        for (uint32_t x = l->n[h].prev; x != h; x = l->n[x].prev) {
            if ((!l->n[x].ref || force) && l->del(l->arg, x)) {
                list_del(l, x);
                return x;
            }
        }
    }
    return VXDP_LRU_NIL;
}

static void add_pending(struct vxdp_lru *l, uint32_t cpu, uint32_t x)
{
    l->n[x].cpu = cpu;
    l->n[x].type = T_LOCAL_PENDING;
    l->n[x].ref = 0;
    list_add(l, x, local_head(l, cpu, T_LOCAL_PENDING));
}

/* bpf_percpu_lru_pop_free: the CPU's own FREE list, shrunk into when empty; the node
 * goes straight to INACTIVE */
static uint32_t percpu_pop_free(struct vxdp_lru *l, uint32_t cpu)
{
    struct lset *S = &l->sets[cpu];
    uint32_t fh = S->heads[T_FREE], x;
    rotate(l, S);
    if (list_empty(l, fh))
        shrink(l, S, PERCPU_FREE_TARGET, fh, T_FREE);
    if (list_empty(l, fh))
        return VXDP_LRU_NIL;
    x = l->n[fh].next;
    l->n[x].ref = 0;
    move(l, S, x, T_INACTIVE);
    return x;
}

uint32_t vxdp_lru_pop_free(struct vxdp_lru *l, uint32_t cpu)
{
    uint32_t x, steal, first;
    cpu %= l->ncpus;
    if (l->percpu)
        return percpu_pop_free(l, cpu);
    x = pop_local_free(l, cpu);
    if (x == VXDP_LRU_NIL) {
        refill_local(l, cpu);
        x = pop_local_free(l, cpu);
    }
    if (x != VXDP_LRU_NIL) {
        add_pending(l, cpu, x);
        return x;
    }
    first = steal = l->next_steal[cpu];
    do {
        x = pop_local_free(l, steal);
        if (x == VXDP_LRU_NIL)
            x = pop_local_pending(l, steal);
        steal = (steal + 1) % l->ncpus;
    } while (x == VXDP_LRU_NIL && steal != first);
    l->next_steal[cpu] = steal;
    if (x != VXDP_LRU_NIL)
        add_pending(l, cpu, x);
    return x;
}

void vxdp_lru_push_free(struct vxdp_lru *l, uint32_t x)
{
    if (l->n[x].type == T_FREE || l->n[x].type == T_LOCAL_FREE)
        return;
    if (l->percpu) {
        move(l, &l->sets[l->n[x].cpu], x, T_FREE);
        return;
    }
    if (l->n[x].type == T_LOCAL_PENDING) {
        l->n[x].type = T_LOCAL_FREE;
        l->n[x].ref = 0;
        list_move(l, x, local_head(l, l->n[x].cpu, T_LOCAL_FREE));
        return;
    }
    move(l, &l->sets[0], x, T_FREE);
}

void vxdp_lru_set_ref(struct vxdp_lru *l, uint32_t x) { l->n[x].ref = 1; }

struct vxdp_lru *vxdp_lru_new(uint32_t nr, uint32_t ncpus, bool percpu, vxdp_lru_del_fn del,
                              void *arg)
{
    struct vxdp_lru *l = calloc(1, sizeof(*l));
    uint32_t nsets, heads, per_cpu;
    if (!l)
        return NULL;
    ncpus = ncpus ? ncpus : 1;
    nsets = percpu ? ncpus : 1;
    heads = 3 * nsets + 2 * ncpus;
    l->n = calloc((size_t)nr + heads, sizeof(*l->n));
    l->sets = calloc(nsets, sizeof(*l->sets));
    l->next_steal = calloc(ncpus, sizeof(*l->next_steal));
    if (!l->n || !l->sets || !l->next_steal) {
        vxdp_lru_free(l);
        return NULL;
    }
    l->nr = nr;
    l->ncpus = ncpus;
    l->percpu = percpu;
    l->nr_scans = percpu ? PERCPU_FREE_TARGET : LOCAL_FREE_TARGET;   /* *_NR_SCANS */
    l->del = del;
    l->arg = arg;
    for (uint32_t h = nr; h < nr + heads; h++)
        l->n[h].prev = l->n[h].next = h;
    for (uint32_t k = 0; k < nsets; k++) {
        for (uint32_t t = 0; t < 3; t++)
            l->sets[k].heads[t] = nr + 3 * k + t;
        l->sets[k].next_inactive_rotation = l->sets[k].heads[T_INACTIVE];
    }
    for (uint32_t c = 0; c < ncpus; c++)
        l->next_steal[c] = c;
    /* bpf_common_lru_populate: every node on the FREE list; bpf_percpu_lru_populate:
     * nr / ncpus consecutive nodes on each CPU's FREE list */
    per_cpu = nr / nsets ? nr / nsets : 1;
    for (uint32_t x = 0; x < nr; x++) {
        uint32_t k = percpu ? (x / per_cpu < nsets ? x / per_cpu : nsets - 1) : 0;
        l->n[x].type = T_FREE;
        l->n[x].cpu = k;
        list_add(l, x, l->sets[k].heads[T_FREE]);
    }
    l->target_free = nr / ncpus / 2;
    if (l->target_free < 1)
        l->target_free = 1;
    if (l->target_free > LOCAL_FREE_TARGET)
        l->target_free = LOCAL_FREE_TARGET;
    return l;
}

void vxdp_lru_free(struct vxdp_lru *l)
{
    if (!l)
        return;
    free(l->n);
    free(l->sets);
    free(l->next_steal);
    free(l);
}
