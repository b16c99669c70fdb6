/*
 * BPF maps with the kernel's semantics (kernel/bpf/arraymap.c, hashtab.c, lpm_trie.c,
 * devmap.c, ringbuf.c, syscall.c, net/xdp/xskmap.c), errno included.
 *
 * Two kinds have no AF_XDP socket or perf event behind them here.  An XSKMAP slot holds the
 * rx queue its "socket" is bound to (a u32 the user writes; the kernel takes a socket fd),
 * and a program's lookup sees that queue as bpf_xdp_sock.queue_id.  A PERF_EVENT_ARRAY
 * behaves as if a reader had opened every slot: bpf_perf_event_output's records go into one
 * ring per map (the ringbuf's code, each record prefixed with its slot index), read back
 * with vxdp_ringbuf_read.
 *
 * A map-in-map (ARRAY_OF_MAPS, HASH_OF_MAPS) holds references to other maps: the syscall
 * side writes and reads their ids (the kernel takes an fd and gives back an id), a slot
 * keeps the map itself, and a program's lookup gets the map, which it may hand to
 * helpers and whose values it may then reach (helpers.c, vm.c ask here).
 *
 * Every map keeps the values programs may point at in one arena (`values`), so the
 * interpreter's bounds check of a map value is two compares.  Hash maps preallocate their
 * elements there, as the kernel does by default; keys and chain links live apart from the
 * values where no program store can reach them.  Per-CPU maps hold `ncpus` values per
 * element, each rounded up to 8 bytes (the kernel's round_up(value_size, 8)), which is also
 * the layout of the value buffer of syscall-side lookups and updates.
 */
#include <stdlib.h>

#include "lru.h"
#include "vm_int.h"

#define NIL UINT32_MAX
#define MAP_REGISTRY_SIZE (1u << 16)   /* live maps findable by id */
#define VXDP_MAP_VALUE_MAX (1u << 22)  /* KMALLOC_MAX_SIZE-ish bound on one value */
#define VXDP_MAP_MEM_MAX (1ull << 31)  /* bound on one map's memory */
#define LPM_DATA_SIZE_MAX 256          /* LPM_DATA_SIZE_MAX, kernel/bpf/lpm_trie.c */
#define RB_BUSY (1u << 31)             /* BPF_RINGBUF_BUSY_BIT */
#define RB_DISCARD (1u << 30)          /* BPF_RINGBUF_DISCARD_BIT */
#define RB_HDR 8u                      /* BPF_RINGBUF_HDR_SZ */
#define RINGBUF_MAX_RECORD_SZ (UINT32_MAX / 4)
#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_EXIST 2

struct hent {
    uint32_t next;              /* bucket chain, or the free list */
    uint8_t used;
};

struct vxdp_map {
    uint32_t type, key_size, value_size, max_entries, flags;
    uint32_t id;
    uint32_t ncpus;             /* values per element: possible CPUs for per-CPU maps, or 1 */
    uint32_t possible_cpus;
    uint32_t elem_size;         /* round_up(value_size, 8) */
    uint32_t stride;            /* elem_size * ncpus: one element's values */
    int refcnt;
    bool frozen;
    uint8_t *values;
    size_t values_len;
    uint8_t *present;           /* PROG_ARRAY, DEVMAP: slot filled */
    /* HASH family, DEVMAP_HASH, LPM_TRIE: element slots */
    uint8_t *keys;
    struct hent *ents;
    uint32_t *buckets;
    uint32_t nbuckets, free_head, count;
    struct vxdp_lru *lru;       /* LRU maps: the kernel's free and eviction lists */
    /* RINGBUF: data is 2 * rb_size so a wrapping sample is contiguous for the program */
    uint8_t *rb;
    uint64_t rb_size, prod, cons;
};

static bool lru_evict(void *arg, uint32_t i);

static struct vxdp_map *map_registry[MAP_REGISTRY_SIZE];
static uint32_t map_next_id = 1;

static bool is_of_maps(uint32_t t)
{
    return t == VXDP_MAP_ARRAY_OF_MAPS || t == VXDP_MAP_HASH_OF_MAPS;
}

static struct vxdp_map *map_by_id(uint32_t id)
{
    struct vxdp_map *m = map_registry[id % MAP_REGISTRY_SIZE];
    return m && m->id == id ? m : NULL;
}

uint32_t vxdp_map_id(const struct vxdp_map *m) { return m->id; }

static bool is_array(uint32_t t)
{
    return t == VXDP_MAP_ARRAY || t == VXDP_MAP_PERCPU_ARRAY || t == VXDP_MAP_PROG_ARRAY ||
           t == VXDP_MAP_DEVMAP || t == VXDP_MAP_XSKMAP || t == VXDP_MAP_ARRAY_OF_MAPS;
}

/* Maps of records, not elements: the ringbuf and the perf event array. */
static bool is_stream(uint32_t t)
{
    return t == VXDP_MAP_RINGBUF || t == VXDP_MAP_PERF_EVENT_ARRAY;
}

static bool is_hash(uint32_t t)
{
    return t == VXDP_MAP_HASH || t == VXDP_MAP_PERCPU_HASH || t == VXDP_MAP_LRU_HASH ||
           t == VXDP_MAP_LRU_PERCPU_HASH || t == VXDP_MAP_DEVMAP_HASH ||
           t == VXDP_MAP_HASH_OF_MAPS;
}

static bool is_lru(uint32_t t)
{
    return t == VXDP_MAP_LRU_HASH || t == VXDP_MAP_LRU_PERCPU_HASH;
}

static bool is_percpu(uint32_t t)
{
    return t == VXDP_MAP_PERCPU_ARRAY || t == VXDP_MAP_PERCPU_HASH ||
           t == VXDP_MAP_LRU_PERCPU_HASH;
}

static uint32_t round_up8(uint32_t v) { return (v + 7) & ~7u; }

/* A key's hash, eight bytes at a time (the kernel uses jhash; any spread will do, since
 * bucket order is no part of the map's contract): each word is mixed in by a multiply,
 * the rest of the key (under 8 bytes) as one more word, then a final avalanche so the
 * low bits that pick the bucket depend on every byte. */
static uint32_t hash_key(const void *key, uint32_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    if (len) {
        w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* memcmp(a, b, len) == 0 without a call into libc for the short keys maps have */
static inline bool key_equal(const uint8_t *a, const uint8_t *b, uint32_t len)
{
    uint64_t x, y;
    for (; len >= 8; a += 8, b += 8, len -= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return false;
    }
    return !len || !memcmp(a, b, len);
}

static uint8_t *slot_key(const struct vxdp_map *m, uint32_t i)
{
    return m->keys + (size_t)i * m->key_size;
}

static uint8_t *slot_value(const struct vxdp_map *m, uint32_t i, uint32_t cpu)
{
    return m->values + (size_t)i * m->stride + (size_t)cpu * m->elem_size;
}

/* ---------------------------------------------------------------- create / free */

static int check_attrs(uint32_t type, uint32_t ks, uint32_t vs, uint32_t max, uint32_t flags,
                       char *err, size_t errlen)
{
    if (flags & ~(VXDP_F_NO_PREALLOC | VXDP_F_NO_COMMON_LRU | VXDP_F_RDONLY_PROG |
                  (1u << 10) /* MMAPABLE */))
        return vxdp_errf(err, errlen, -EINVAL, "unsupported map_flags 0x%x", flags);
    if ((flags & VXDP_F_NO_COMMON_LRU) && !is_lru(type))   /* htab_map_alloc_check */
        return vxdp_errf(err, errlen, -EINVAL, "BPF_F_NO_COMMON_LRU needs an lru map");
    if (type == VXDP_MAP_RINGBUF) {
        /* ringbuf_map_alloc: no key or value, a power-of-2 multiple of the page size */
        if (ks || vs || !max || (max & (max - 1)) || max % VXDP_PAGE_SIZE)
            return vxdp_errf(err, errlen, -EINVAL, "ringbuf needs key_size 0, value_size 0 "
                             "and a power-of-2 page multiple as max_entries");
        return 0;
    }
    if (type == VXDP_MAP_PERF_EVENT_ARRAY && (ks != 4 || vs != 4 || !max))
        return vxdp_errf(err, errlen, -EINVAL, "perf event array needs key_size 4, "
                         "value_size 4 and max_entries above 0");
    if (type == VXDP_MAP_XSKMAP && (ks != 4 || vs != 4))   /* xsk_map_alloc */
        return vxdp_errf(err, errlen, -EINVAL, "xskmap needs key_size 4, value_size 4");
    if (is_of_maps(type) && vs != 4)   /* bpf_map_meta_alloc's outer map: an fd or id */
        return vxdp_errf(err, errlen, -EINVAL, "map-in-map needs value_size 4");
    if (!max || !ks || !vs)
        return vxdp_errf(err, errlen, -EINVAL, "map needs key_size, value_size and "
                         "max_entries above 0");
    if (vs > VXDP_MAP_VALUE_MAX)
        return vxdp_errf(err, errlen, -E2BIG, "value_size %u too large", vs);
    if (is_array(type) && ks != 4)
        return vxdp_errf(err, errlen, -EINVAL, "array maps need key_size 4");
    if (type == VXDP_MAP_PROG_ARRAY && vs != 4)
        return vxdp_errf(err, errlen, -EINVAL, "prog array needs value_size 4");
    if ((type == VXDP_MAP_DEVMAP || type == VXDP_MAP_DEVMAP_HASH) &&
        (ks != 4 || (vs != 4 && vs != 8)))
        return vxdp_errf(err, errlen, -EINVAL, "devmap needs key_size 4, value_size 4 or 8");
    if (is_hash(type) && ks > VXDP_STACK_SIZE)
        return vxdp_errf(err, errlen, -E2BIG, "key_size %u too large", ks);
    if (is_lru(type) && (flags & VXDP_F_NO_PREALLOC))
        return vxdp_errf(err, errlen, -VXDP_ENOTSUPP, "lru maps are always preallocated");
    if (type == VXDP_MAP_LPM_TRIE) {
        /* trie_alloc: BPF_F_NO_PREALLOC required, 1..256 data bytes after the prefixlen */
        if (!(flags & VXDP_F_NO_PREALLOC))
            return vxdp_errf(err, errlen, -EINVAL, "lpm trie needs BPF_F_NO_PREALLOC");
        if (ks < 5 || ks > 4 + LPM_DATA_SIZE_MAX)
            return vxdp_errf(err, errlen, -EINVAL, "lpm trie key_size %u not in 5..260", ks);
    }
    return 0;
}

int vxdp_map_create(struct vxdp_map **out, uint32_t type, uint32_t ks, uint32_t vs,
                    uint32_t max, uint32_t flags, uint32_t ncpus, char *err, size_t errlen)
{
    struct vxdp_map *m;
    int rc;

    *out = NULL;
    if (!is_array(type) && !is_hash(type) && type != VXDP_MAP_LPM_TRIE && !is_stream(type))
        return vxdp_errf(err, errlen, -EINVAL, "map type %u is not supported by the core",
                         type);
    rc = check_attrs(type, ks, vs, max, flags, err, errlen);
    if (rc)
        return rc;
    m = calloc(1, sizeof(*m));
    if (!m)
        return vxdp_errf(err, errlen, -ENOMEM, "out of memory");
    m->type = type;
    m->key_size = ks;
    m->value_size = is_of_maps(type) ? sizeof(struct vxdp_map *) : vs;   /* a slot: the map */
    m->max_entries = max;
    m->flags = flags;
    m->possible_cpus = ncpus ? ncpus : 1;
    m->ncpus = is_percpu(type) ? m->possible_cpus : 1;
    m->refcnt = 1;
    m->free_head = NIL;
    if (is_stream(type)) {
        m->rb_size = type == VXDP_MAP_RINGBUF ? max : VXDP_PERF_RING_SIZE;
        m->rb = calloc(2, m->rb_size);
        if (!m->rb)
            goto nomem;
        goto done;
    }
    if (flags & VXDP_F_NO_COMMON_LRU) {
        /* htab_map_alloc: a per-CPU LRU holds max_entries rounded to whole CPUs */
        uint64_t up = ((uint64_t)max + m->possible_cpus - 1) / m->possible_cpus *
                      m->possible_cpus;
        max = up <= UINT32_MAX ? (uint32_t)up : max / m->possible_cpus * m->possible_cpus;
        m->max_entries = max;
    }
    m->elem_size = round_up8(m->value_size);
    m->stride = m->elem_size * m->ncpus;
    if ((uint64_t)m->stride * max > VXDP_MAP_MEM_MAX ||
        (uint64_t)(ks + sizeof(struct hent)) * max > VXDP_MAP_MEM_MAX) {
        uint32_t stride = m->stride;
        free(m);
        return vxdp_errf(err, errlen, -E2BIG, "map of %u x %u bytes is too large", max,
                         stride);
    }
    m->values_len = (size_t)m->stride * max;
    m->values = calloc(1, m->values_len);
    if (!m->values)
        goto nomem;
    if (type == VXDP_MAP_PROG_ARRAY || type == VXDP_MAP_DEVMAP || type == VXDP_MAP_XSKMAP ||
        type == VXDP_MAP_ARRAY_OF_MAPS) {
        m->present = calloc(max, 1);
        if (!m->present)
            goto nomem;
    }
    if (is_hash(type) || type == VXDP_MAP_LPM_TRIE) {
        uint32_t nb = 1;
        while (nb < max && nb < (1u << 30))
            nb <<= 1;
        m->nbuckets = nb;
        m->keys = calloc(max, ks);
        m->ents = calloc(max, sizeof(*m->ents));
        m->buckets = malloc((size_t)nb * sizeof(*m->buckets));
        if (!m->keys || !m->ents || !m->buckets)
            goto nomem;
        for (uint32_t i = 0; i < nb; i++)
            m->buckets[i] = NIL;
        for (uint32_t i = max; i-- > 0;) {
            m->ents[i].next = m->free_head;
            m->free_head = i;
        }
        if (is_lru(type)) {
            m->lru = vxdp_lru_new(max, m->possible_cpus, flags & VXDP_F_NO_COMMON_LRU,
                                  lru_evict, m);
            if (!m->lru)
                goto nomem;
        }
    }
done:
    {
        uint32_t tries;
        for (tries = 0; tries < MAP_REGISTRY_SIZE &&
             map_registry[map_next_id % MAP_REGISTRY_SIZE]; tries++)
            map_next_id = map_next_id + 1 ? map_next_id + 1 : 1;
        if (tries < MAP_REGISTRY_SIZE) {   /* else id 0: not findable, still usable */
            m->id = map_next_id;
            map_registry[m->id % MAP_REGISTRY_SIZE] = m;
            map_next_id = map_next_id + 1 ? map_next_id + 1 : 1;
        }
    }
    *out = m;
    return 0;
nomem:
    m->refcnt = 1;
    vxdp_map_free(m);
    return vxdp_errf(err, errlen, -ENOMEM, "out of memory for the map");
}

void vxdp_map_get(struct vxdp_map *m) { m->refcnt++; }

/* ---------------------------------------------------------------- map-in-map slots */

static bool slot_used(const struct vxdp_map *m, uint32_t i)
{
    return m->present ? m->present[i] : m->ents[i].used;
}

static struct vxdp_map *slot_map(const struct vxdp_map *m, uint32_t i)
{
    struct vxdp_map *inner;
    memcpy(&inner, m->values + (size_t)i * m->stride, sizeof(inner));
    return inner;
}

struct vxdp_map *vxdp_map_inner_find(struct vxdp_map *m, uint64_t addr)
{
    if (!is_of_maps(m->type))
        return NULL;
    for (uint32_t i = 0; i < m->max_entries; i++)
        if (slot_used(m, i) && (uint64_t)(uintptr_t)slot_map(m, i) == addr)
            return slot_map(m, i);
    return NULL;
}

int vxdp_map_inner_region(struct vxdp_map *m, uint64_t addr, uint64_t len)
{
    struct vxdp_map_region reg;
    if (!is_of_maps(m->type))
        return -1;
    for (uint32_t i = 0; i < m->max_entries; i++) {
        if (!slot_used(m, i))
            continue;
        vxdp_map_region(slot_map(m, i), &reg);
        if (addr >= reg.lo && addr <= reg.hi && reg.hi - addr >= len)
            return reg.writable;
    }
    return -1;
}

void vxdp_map_free(struct vxdp_map *m)
{
    if (!m || --m->refcnt > 0)
        return;
    if (map_registry[m->id % MAP_REGISTRY_SIZE] == m)
        map_registry[m->id % MAP_REGISTRY_SIZE] = NULL;
    if (is_of_maps(m->type))
        for (uint32_t i = 0; i < m->max_entries; i++)
            if (slot_used(m, i))
                vxdp_map_free(slot_map(m, i));
    free(m->values);
    free(m->present);
    free(m->keys);
    free(m->ents);
    free(m->buckets);
    free(m->rb);
    vxdp_lru_free(m->lru);
    free(m);
}

int vxdp_map_freeze(struct vxdp_map *m)
{
    m->frozen = true;
    return 0;
}

uint32_t vxdp_map_type(const struct vxdp_map *m) { return m->type; }
uint32_t vxdp_map_key_size(const struct vxdp_map *m) { return m->key_size; }
uint32_t vxdp_map_value_size(const struct vxdp_map *m) { return m->value_size; }
bool vxdp_map_rdonly_prog(const struct vxdp_map *m) { return m->flags & VXDP_F_RDONLY_PROG; }

void vxdp_map_region(const struct vxdp_map *m, struct vxdp_map_region *out)
{
    if (!m->values || m->type == VXDP_MAP_PROG_ARRAY || is_of_maps(m->type)) {
        out->lo = out->hi = 0;
        out->writable = false;
        return;
    }
    out->lo = (uintptr_t)m->values;
    out->hi = (uintptr_t)m->values + m->values_len;
    out->writable = !(m->flags & VXDP_F_RDONLY_PROG) && m->type != VXDP_MAP_DEVMAP &&
                    m->type != VXDP_MAP_DEVMAP_HASH && m->type != VXDP_MAP_XSKMAP;
}

/* Direct value access (BPF_PSEUDO_MAP_VALUE): single-element arrays only, as the kernel's
 * array_map_direct_value_addr. */
void *vxdp_map_value_ptr(struct vxdp_map *m, uint64_t offset, uint64_t len)
{
    if (m->type != VXDP_MAP_ARRAY || m->max_entries != 1 || offset >= m->value_size ||
        len > m->value_size - offset)
        return NULL;
    return m->values + offset;
}

/* What compiled programs need to look up in the map inline (jit_glue.c): a plain array
 * (one value per element, no presence bits) qualifies, as in the kernel's JIT. */
void vxdp_map_jit_desc(const struct vxdp_map *m, struct vxdp_jit_map *out)
{
    out->map = (uintptr_t)m;
    out->values = (uintptr_t)m->values;
    out->max_entries = m->max_entries;
    out->stride = m->stride;
    out->inline_array = m->type == VXDP_MAP_ARRAY && m->ncpus == 1 && !m->present;
}

/* ---------------------------------------------------------------- hash and LPM slots */

static uint32_t hash_find(const struct vxdp_map *m, const void *key)
{
    uint32_t b = hash_key(key, m->key_size) & (m->nbuckets - 1);
    for (uint32_t i = m->buckets[b]; i != NIL; i = m->ents[i].next)
        if (key_equal(slot_key(m, i), key, m->key_size))
            return i;
    return NIL;
}

/* Take element i out of its bucket chain. */
static void hash_unhook(struct vxdp_map *m, uint32_t i)
{
    uint32_t b = hash_key(slot_key(m, i), m->key_size) & (m->nbuckets - 1);
    uint32_t *pp = &m->buckets[b];
    while (*pp != i)
        pp = &m->ents[*pp].next;
    *pp = m->ents[i].next;
    m->ents[i].used = 0;
    m->count--;
}

/* The LRU evicts element i (htab_lru_map_delete_node): false when it is not hashed. */
static bool lru_evict(void *arg, uint32_t i)
{
    struct vxdp_map *m = arg;
    if (!m->ents[i].used)
        return false;
    hash_unhook(m, i);
    return true;
}

/* Delete element i: LRU maps give it back to the LRU lists, others to the free list. */
static void hash_unlink(struct vxdp_map *m, uint32_t i)
{
    hash_unhook(m, i);
    if (m->lru) {
        vxdp_lru_push_free(m->lru, i);
        return;
    }
    m->ents[i].next = m->free_head;
    m->free_head = i;
}

/* A free slot for a new element; an LRU map may evict to find one (on `cpu`'s lists). */
static uint32_t slot_alloc(struct vxdp_map *m, uint32_t cpu)
{
    uint32_t i;
    if (m->lru)
        return vxdp_lru_pop_free(m->lru, cpu);
    if (m->free_head == NIL)
        return NIL;
    i = m->free_head;
    m->free_head = m->ents[i].next;
    return i;
}

static void hash_link(struct vxdp_map *m, uint32_t i, const void *key)
{
    uint32_t b = hash_key(key, m->key_size) & (m->nbuckets - 1);
    memcpy(slot_key(m, i), key, m->key_size);
    m->ents[i].used = 1;
    m->ents[i].next = m->buckets[b];
    m->buckets[b] = i;
    m->count++;
}

/* LPM: does the entry's prefix cover `key` (up to the key's own prefixlen)? */
static uint32_t lpm_prefixlen(const uint8_t *key)
{
    uint32_t v;
    memcpy(&v, key, 4);
    return v;
}

static bool lpm_bits_equal(const uint8_t *a, const uint8_t *b, uint32_t bits)
{
    uint32_t bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes))
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return ((a[bytes] ^ b[bytes]) & mask) == 0;
}

static uint32_t lpm_find_exact(const struct vxdp_map *m, const uint8_t *key)
{
    uint32_t plen = lpm_prefixlen(key);
    for (uint32_t i = 0; i < m->max_entries; i++) {
        const uint8_t *k = slot_key(m, i);
        if (m->ents[i].used && lpm_prefixlen(k) == plen && lpm_bits_equal(k + 4, key + 4, plen))
            return i;
    }
    return NIL;
}

/* trie_lookup_elem: the longest stored prefix that matches the first key->prefixlen bits;
 * a prefixlen beyond the key's data matches nothing */
static uint32_t lpm_lookup(const struct vxdp_map *m, const uint8_t *key)
{
    uint32_t best = NIL, best_len = 0, max_len = lpm_prefixlen(key);
    if (max_len > 8 * (m->key_size - 4))
        return NIL;
    for (uint32_t i = 0; i < m->max_entries; i++) {
        const uint8_t *k = slot_key(m, i);
        uint32_t plen = lpm_prefixlen(k);
        if (!m->ents[i].used || plen > max_len || (best != NIL && plen <= best_len))
            continue;
        if (lpm_bits_equal(k + 4, key + 4, plen)) {
            best = i;
            best_len = plen;
        }
    }
    return best;
}

/* The kernel walks the trie in post-order (trie_get_next_key): a more specific prefix comes
 * before the prefix that covers it, and the 0 branch before the 1 branch. */
static int lpm_cmp(const uint8_t *a, const uint8_t *b)
{
    uint32_t la = lpm_prefixlen(a), lb = lpm_prefixlen(b), n = la < lb ? la : lb;
    for (uint32_t bit = 0; bit < n; bit++) {
        int ba = (a[4 + bit / 8] >> (7 - bit % 8)) & 1;
        int bb = (b[4 + bit / 8] >> (7 - bit % 8)) & 1;
        if (ba != bb)
            return ba - bb;
    }
    return la == lb ? 0 : (la > lb ? -1 : 1);
}

/* ---------------------------------------------------------------- operations */

static int array_index(const struct vxdp_map *m, const void *key, uint32_t *idx)
{
    memcpy(idx, key, 4);
    return *idx < m->max_entries ? 0 : -ENOENT;
}

/* Find an element; returns its slot or NIL.  `touch` marks LRU use (program lookups). */
static uint32_t find_slot(struct vxdp_map *m, const void *key, bool touch)
{
    uint32_t i;
    if (is_array(m->type)) {
        if (array_index(m, key, &i))
            return NIL;
        if (m->present && !m->present[i])
            return NIL;
        return i;
    }
    if (m->type == VXDP_MAP_LPM_TRIE)
        return lpm_lookup(m, key);
    i = hash_find(m, key);
    if (i != NIL && touch && m->lru)
        vxdp_lru_set_ref(m->lru, i);   /* program lookups only, as htab_lru_map_lookup_elem */
    return i;
}

int vxdp_map_lookup(struct vxdp_map *m, const void *key, void *value, uint32_t cpu_values,
                    char *err, size_t errlen)
{
    uint32_t i;
    if (is_stream(m->type))
        return vxdp_errf(err, errlen, -VXDP_ENOTSUPP, "record maps have no elements to look up");
    if (cpu_values != m->ncpus)
        return vxdp_errf(err, errlen, -EINVAL, "lookup needs %u values, got %u", m->ncpus,
                         cpu_values);
    i = find_slot(m, key, false);
    if (i == NIL)
        return vxdp_errf(err, errlen, -ENOENT, "no such element");
    if (is_of_maps(m->type)) {   /* the kernel gives the inner map's id */
        uint32_t id = slot_map(m, i)->id;
        memcpy(value, &id, 4);
        return 0;
    }
    for (uint32_t c = 0; c < m->ncpus; c++)
        memcpy((uint8_t *)value + (size_t)c * m->elem_size, slot_value(m, i, c),
               m->ncpus > 1 ? m->elem_size : m->value_size);
    return 0;
}

/* Write an element's value: `value` holds one value per CPU 8 bytes apart (the syscall
 * side), or one value for `cpu` (a program; a fresh per-CPU element starts zeroed on the
 * other CPUs, as pcpu_init_value). */
static void store_value(struct vxdp_map *m, uint32_t i, const uint8_t *value, bool all_cpus,
                        uint32_t cpu, bool fresh)
{
    if (all_cpus) {
        for (uint32_t c = 0; c < m->ncpus; c++)
            memcpy(slot_value(m, i, c), value + (size_t)c * m->elem_size, m->value_size);
        return;
    }
    if (fresh)
        memset(slot_value(m, i, 0), 0, m->stride);
    memcpy(slot_value(m, i, m->ncpus > 1 ? cpu % m->ncpus : 0), value, m->value_size);
}

static int check_flags(uint32_t old, uint64_t flags, char *err, size_t errlen)
{
    if (old != NIL && flags == BPF_NOEXIST)
        return vxdp_errf(err, errlen, -EEXIST, "element exists");
    if (old == NIL && flags == BPF_EXIST)
        return vxdp_errf(err, errlen, -ENOENT, "no such element");
    return 0;
}

static int array_update(struct vxdp_map *m, const void *key, const uint8_t *value,
                        bool all_cpus, uint32_t cpu, uint64_t flags, char *err, size_t errlen)
{
    uint32_t idx;
    if (array_index(m, key, &idx))   /* array_map_update_elem: all preallocated */
        return vxdp_errf(err, errlen, -E2BIG, "index %u not below max_entries %u", idx,
                         m->max_entries);
    /* bpf_fd_array_map_update_elem takes BPF_ANY only; the other arrays, dev_map_update_elem
     * included, refuse BPF_NOEXIST (their elements always exist) and accept BPF_EXIST */
    if ((m->type == VXDP_MAP_PROG_ARRAY || m->type == VXDP_MAP_ARRAY_OF_MAPS) &&
        flags != BPF_ANY)   /* bpf_fd_array_map_update_elem */
        return vxdp_errf(err, errlen, -EINVAL, "%s updates take BPF_ANY only",
                         m->type == VXDP_MAP_PROG_ARRAY ? "prog array" : "array of maps");
    if (m->type == VXDP_MAP_XSKMAP) {   /* xsk_map_update_elem: a slot may be empty */
        int rc = check_flags(m->present[idx] ? idx : NIL, flags, err, errlen);
        if (rc)
            return rc;
    } else if (flags == BPF_NOEXIST)
        return vxdp_errf(err, errlen, -EEXIST, "array elements always exist");
    if (m->type == VXDP_MAP_PROG_ARRAY) {
        uint32_t id;
        memcpy(&id, value, 4);
        if (!vxdp_prog_by_id(id))
            return vxdp_errf(err, errlen, -EBADF, "no program with id %u", id);
    }
    if (m->present)
        m->present[idx] = 1;
    store_value(m, idx, value, all_cpus, cpu, false);
    return 0;
}

/* htab_lru_map_update_elem and htab_lru_percpu_map_update_elem: a node is taken from the
 * LRU first (which may evict, even the key being updated), then the flags are checked. */
static int lru_update(struct vxdp_map *m, const void *key, const uint8_t *value,
                      bool all_cpus, uint32_t cpu, uint64_t flags, char *err, size_t errlen)
{
    bool percpu = is_percpu(m->type);
    uint32_t node = NIL, old;
    int rc;

    if (!percpu || flags != BPF_EXIST) {
        node = vxdp_lru_pop_free(m->lru, cpu);
        if (node == NIL)
            return vxdp_errf(err, errlen, -ENOMEM, "no free lru node");
    }
    old = hash_find(m, key);
    rc = check_flags(old, flags, err, errlen);
    if (rc) {
        if (node != NIL)
            vxdp_lru_push_free(m->lru, node);
        return rc;
    }
    if (percpu && old != NIL) {   /* per-CPU values are updated in place */
        vxdp_lru_set_ref(m->lru, old);
        store_value(m, old, value, all_cpus, cpu, false);
        if (node != NIL)
            vxdp_lru_push_free(m->lru, node);
        return 0;
    }
    store_value(m, node, value, all_cpus, cpu, true);
    hash_link(m, node, key);
    if (old != NIL) {
        vxdp_lru_set_ref(m->lru, node);
        hash_unhook(m, old);
        vxdp_lru_push_free(m->lru, old);
    }
    return 0;
}

/* The common update: arrays, hash maps (LRU apart) and the LPM trie. */
static int update(struct vxdp_map *m, const void *key, const uint8_t *value, bool all_cpus,
                  uint32_t cpu, uint64_t flags, char *err, size_t errlen)
{
    uint32_t i;
    int rc;

    if (flags > BPF_EXIST)
        return vxdp_errf(err, errlen, -EINVAL, "invalid update flags 0x%llx",
                         (unsigned long long)flags);
    if (is_array(m->type))
        return array_update(m, key, value, all_cpus, cpu, flags, err, errlen);
    if (m->lru)
        return lru_update(m, key, value, all_cpus, cpu, flags, err, errlen);
    if (m->type == VXDP_MAP_LPM_TRIE) {
        if (lpm_prefixlen(key) > 8 * (m->key_size - 4))
            return vxdp_errf(err, errlen, -EINVAL, "prefixlen %u above %u",
                             lpm_prefixlen(key), 8 * (m->key_size - 4));
        i = lpm_find_exact(m, key);
    } else {
        i = hash_find(m, key);
    }
    /* __dev_map_hash_update_elem checks BPF_NOEXIST only */
    rc = check_flags(i, m->type == VXDP_MAP_DEVMAP_HASH && flags == BPF_EXIST ? BPF_ANY : flags,
                     err, errlen);
    if (rc)
        return rc;
    if (i != NIL) {
        if (m->type == VXDP_MAP_LPM_TRIE)
            memcpy(slot_key(m, i), key, m->key_size);   /* the newest key's bytes */
        store_value(m, i, value, all_cpus, cpu, false);
        return 0;
    }
    i = slot_alloc(m, cpu);
    if (i == NIL)
        return vxdp_errf(err, errlen, m->type == VXDP_MAP_LPM_TRIE ? -ENOSPC : -E2BIG,
                         "map is full (%u entries)", m->max_entries);
    if (m->type == VXDP_MAP_LPM_TRIE) {
        memcpy(slot_key(m, i), key, m->key_size);
        m->ents[i].used = 1;
        m->count++;
    } else {
        hash_link(m, i, key);
    }
    store_value(m, i, value, all_cpus, cpu, true);
    return 0;
}

/* A map-in-map slot takes a map's id: the map (not itself a map-in-map) is referenced
 * from the slot, the one it replaces released. */
static int of_maps_update(struct vxdp_map *m, const void *key, const void *value,
                          uint64_t flags, char *err, size_t errlen)
{
    uint32_t id, old;
    struct vxdp_map *inner, *prev = NULL;
    int rc;
    memcpy(&id, value, 4);
    inner = map_by_id(id);
    if (!inner || is_of_maps(inner->type))
        return vxdp_errf(err, errlen, -EBADF, "no map with id %u to put in a map-in-map", id);
    old = find_slot(m, key, false);
    if (old != NIL)
        prev = slot_map(m, old);
    rc = update(m, key, (const uint8_t *)&inner, true, 0, flags, err, errlen);
    if (rc)
        return rc;
    vxdp_map_get(inner);
    vxdp_map_free(prev);
    return 0;
}

int vxdp_map_update(struct vxdp_map *m, const void *key, const void *value,
                    uint32_t cpu_values, uint64_t flags, char *err, size_t errlen)
{
    if (is_stream(m->type))
        return vxdp_errf(err, errlen, -VXDP_ENOTSUPP, "record maps have no elements to update");
    if (m->frozen)
        return vxdp_errf(err, errlen, -EPERM, "map is frozen");
    if (cpu_values != m->ncpus)
        return vxdp_errf(err, errlen, -EINVAL, "update needs %u values, got %u", m->ncpus,
                         cpu_values);
    if (is_of_maps(m->type))
        return of_maps_update(m, key, value, flags, err, errlen);
    return update(m, key, value, true, 0, flags, err, errlen);
}

static int delete(struct vxdp_map *m, const void *key, char *err, size_t errlen)
{
    uint32_t i;
    if (m->type == VXDP_MAP_ARRAY || m->type == VXDP_MAP_PERCPU_ARRAY)
        return vxdp_errf(err, errlen, -EINVAL, "array elements cannot be deleted");
    if (m->present) {
        /* dev_map_delete_elem: EINVAL past the end, an empty slot is fine;
         * fd_array_map_delete_elem: E2BIG past the end, ENOENT for an empty slot */
        bool devmap = m->type == VXDP_MAP_DEVMAP || m->type == VXDP_MAP_XSKMAP;
        if (array_index(m, key, &i))
            return vxdp_errf(err, errlen, devmap ? -EINVAL : -E2BIG,
                             "index %u not below max_entries %u", i, m->max_entries);
        if (!m->present[i])
            return devmap ? 0 : vxdp_errf(err, errlen, -ENOENT, "no such element");
        if (is_of_maps(m->type))
            vxdp_map_free(slot_map(m, i));
        m->present[i] = 0;
        memset(slot_value(m, i, 0), 0, m->stride);
        return 0;
    }
    if (m->type == VXDP_MAP_LPM_TRIE) {
        if (lpm_prefixlen(key) > 8 * (m->key_size - 4))
            return vxdp_errf(err, errlen, -EINVAL, "prefixlen above the key's data");
        i = lpm_find_exact(m, key);
        if (i == NIL)
            return vxdp_errf(err, errlen, -ENOENT, "no such element");
        m->ents[i].used = 0;
        m->ents[i].next = m->free_head;
        m->free_head = i;
        m->count--;
        return 0;
    }
    i = hash_find(m, key);
    if (i == NIL)
        return vxdp_errf(err, errlen, -ENOENT, "no such element");
    if (is_of_maps(m->type))
        vxdp_map_free(slot_map(m, i));
    hash_unlink(m, i);
    return 0;
}

int vxdp_map_delete(struct vxdp_map *m, const void *key, char *err, size_t errlen)
{
    if (is_stream(m->type))
        return vxdp_errf(err, errlen, -VXDP_ENOTSUPP, "record maps have no elements to delete");
    if (m->frozen)
        return vxdp_errf(err, errlen, -EPERM, "map is frozen");
    return delete(m, key, err, errlen);
}

int vxdp_map_next_key(struct vxdp_map *m, const void *key, void *next, char *err,
                      size_t errlen)
{
    if (is_stream(m->type))
        return vxdp_errf(err, errlen, -VXDP_ENOTSUPP, "record maps have no keys");
    if (is_array(m->type)) {
        /* array_map_get_next_key: every index, present or not; a bad key restarts */
        uint32_t idx = 0, n;
        if (key)
            memcpy(&idx, key, 4);
        n = (!key || idx >= m->max_entries) ? 0 : idx + 1;
        if (n >= m->max_entries)
            return vxdp_errf(err, errlen, -ENOENT, "no next key");
        memcpy(next, &n, 4);
        return 0;
    }
    if (m->type == VXDP_MAP_LPM_TRIE) {
        uint32_t best = NIL, start = key ? lpm_find_exact(m, key) : NIL;
        for (uint32_t i = 0; i < m->max_entries; i++) {
            if (!m->ents[i].used)
                continue;
            if (start != NIL && lpm_cmp(slot_key(m, i), slot_key(m, start)) <= 0)
                continue;
            if (best == NIL || lpm_cmp(slot_key(m, i), slot_key(m, best)) < 0)
                best = i;
        }
        if (best == NIL)
            return vxdp_errf(err, errlen, -ENOENT, "no next key");
        memcpy(next, slot_key(m, best), m->key_size);
        return 0;
    }
    /* htab_map_get_next_key: the next element in its bucket, else the following buckets */
    uint32_t b = 0, i = key ? hash_find(m, key) : NIL;
    if (i != NIL) {
        if (m->ents[i].next != NIL) {
            memcpy(next, slot_key(m, m->ents[i].next), m->key_size);
            return 0;
        }
        b = (hash_key(key, m->key_size) & (m->nbuckets - 1)) + 1;
    }
    for (; b < m->nbuckets; b++) {
        if (m->buckets[b] != NIL) {
            memcpy(next, slot_key(m, m->buckets[b]), m->key_size);
            return 0;
        }
    }
    return vxdp_errf(err, errlen, -ENOENT, "no next key");
}

/* ---------------------------------------------------------------- program side */

void *vxdp_map_prog_lookup(struct vxdp_map *m, const void *key, uint32_t cpu)
{
    uint32_t i;
    if (m->type == VXDP_MAP_PROG_ARRAY || is_stream(m->type))
        return NULL;
    i = find_slot(m, key, true);
    if (i == NIL)
        return NULL;
    if (is_of_maps(m->type))   /* the inner map itself, as the kernel's lookup gives */
        return slot_map(m, i);
    return slot_value(m, i, m->ncpus > 1 ? cpu % m->ncpus : 0);
}

int vxdp_map_prog_update(struct vxdp_map *m, const void *key, const void *value,
                         uint64_t flags, uint32_t cpu)
{
    if (m->type == VXDP_MAP_PROG_ARRAY || is_stream(m->type) || m->type == VXDP_MAP_XSKMAP ||
        m->type == VXDP_MAP_DEVMAP || m->type == VXDP_MAP_DEVMAP_HASH || is_of_maps(m->type))
        return -EINVAL;
    return update(m, key, value, false, cpu, flags, NULL, 0);
}

int vxdp_map_prog_delete(struct vxdp_map *m, const void *key)
{
    if (m->type == VXDP_MAP_PROG_ARRAY || is_stream(m->type) || m->type == VXDP_MAP_XSKMAP ||
        m->type == VXDP_MAP_DEVMAP || m->type == VXDP_MAP_DEVMAP_HASH || is_of_maps(m->type))
        return -EINVAL;
    return delete(m, key, NULL, 0);
}

int vxdp_map_prog_array_get(struct vxdp_map *m, uint32_t index, uint32_t *prog_id)
{
    if (m->type != VXDP_MAP_PROG_ARRAY || index >= m->max_entries || !m->present[index])
        return -ENOENT;
    memcpy(prog_id, slot_value(m, index, 0), 4);
    return 0;
}

/* The queue an XSKMAP slot's socket is bound to, -ENOENT for an empty slot. */
int vxdp_map_xsk_get(struct vxdp_map *m, uint32_t key, uint32_t *queue)
{
    if (m->type != VXDP_MAP_XSKMAP || key >= m->max_entries || !m->present[key])
        return -ENOENT;
    memcpy(queue, slot_value(m, key, 0), 4);
    return 0;
}

/* __bpf_perf_event_output into slot `index` from `cpu`: the record is the index, then `a`
 * and `b` (the program's data, then packet bytes).  Slot i's reader is on CPU i, so
 * another CPU's slot is -EOPNOTSUPP; -ENOSPC when the ring is full (a lost record). */
int vxdp_perf_output(struct vxdp_map *m, uint64_t index, uint32_t cpu, const void *a,
                     uint64_t alen, const void *b, uint64_t blen)
{
    uint8_t *rec;
    if (m->type != VXDP_MAP_PERF_EVENT_ARRAY)
        return -EINVAL;
    if (index >= m->max_entries)
        return -E2BIG;
    if (index != cpu)
        return -EOPNOTSUPP;
    rec = vxdp_ringbuf_reserve(m, 4 + alen + blen);
    if (!rec)
        return -ENOSPC;
    memcpy(rec, &(uint32_t){(uint32_t)index}, 4);
    memcpy(rec + 4, a, alen);
    memcpy(rec + 4 + alen, b, blen);
    vxdp_ringbuf_commit(m, rec, false);
    return 0;
}

/* The ifindex a devmap slot redirects to (the value is a u32 ifindex or a
 * struct bpf_devmap_val whose first field is the ifindex). */
int vxdp_map_devmap_get(struct vxdp_map *m, uint32_t key, uint32_t *ifindex)
{
    uint32_t i = find_slot(m, &key, false);
    if (i == NIL)
        return -ENOENT;
    memcpy(ifindex, slot_value(m, i, 0), 4);
    return 0;
}

/* ---------------------------------------------------------------- ringbuf */

void *vxdp_ringbuf_reserve(struct vxdp_map *m, uint64_t size)
{
    /* __bpf_ringbuf_reserve: an 8-byte header, lengths rounded to 8, at most mask bytes
     * outstanding between consumer and producer */
    uint64_t len = (size + RB_HDR + 7) & ~7ull, off;
    uint32_t hdr[2];
    if (!is_stream(m->type) || size > RINGBUF_MAX_RECORD_SZ ||
        size > m->rb_size - RB_HDR || len > m->rb_size ||
        m->prod + len - m->cons > m->rb_size - 1)
        return NULL;
    off = m->prod & (m->rb_size - 1);
    hdr[0] = (uint32_t)size | RB_BUSY;
    hdr[1] = (uint32_t)off;
    memcpy(m->rb + off, hdr, sizeof(hdr));
    m->prod += len;
    return m->rb + off + RB_HDR;
}

void vxdp_ringbuf_commit(struct vxdp_map *m, void *sample, bool discard)
{
    uint8_t *h = (uint8_t *)sample - RB_HDR;
    uint32_t len;
    uint64_t off = (uint64_t)(h - m->rb), end;
    memcpy(&len, h, 4);
    len &= ~(RB_BUSY | RB_DISCARD);
    end = off + RB_HDR + len;
    if (end > m->rb_size)   /* the part past the end belongs at the start of the ring */
        memcpy(m->rb, m->rb + m->rb_size, end - m->rb_size);
    len |= discard ? RB_DISCARD : 0;
    memcpy(h, &len, 4);
}

/* Next committed record into buf: its length, -ENOENT when none is ready, -ENOSPC (and
 * nothing consumed) when cap is too small. */
int vxdp_ringbuf_read(struct vxdp_map *m, void *buf, size_t cap)
{
    if (!is_stream(m->type))
        return -EINVAL;
    while (m->cons < m->prod) {
        uint64_t off = m->cons & (m->rb_size - 1), first;
        uint32_t hdr;
        memcpy(&hdr, m->rb + off, 4);
        if (hdr & RB_BUSY)
            return -ENOENT;
        uint32_t len = hdr & ~(RB_BUSY | RB_DISCARD);
        if (hdr & RB_DISCARD) {
            m->cons += (len + RB_HDR + 7) & ~7u;
            continue;
        }
        if (len > cap)
            return -ENOSPC;
        off = (off + RB_HDR) & (m->rb_size - 1);
        first = m->rb_size - off < len ? m->rb_size - off : len;
        memcpy(buf, m->rb + off, first);
        memcpy((uint8_t *)buf + first, m->rb, len - first);
        m->cons += (len + RB_HDR + 7) & ~7u;
        return (int)len;
    }
    return -ENOENT;
}
