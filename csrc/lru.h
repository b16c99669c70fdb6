/*
 * The kernel's common LRU list (kernel/bpf/bpf_lru_list.c) over element indices; lru.c
 * tells how it works.  `del` unhooks an element from its hash table when the LRU evicts it
 * (htab_lru_map_delete_node) and says whether it was there.
 */
#ifndef VXDP_LRU_H
#define VXDP_LRU_H

#include <stdbool.h>
#include <stdint.h>

#define VXDP_LRU_NIL UINT32_MAX

struct vxdp_lru;
typedef bool (*vxdp_lru_del_fn)(void *arg, uint32_t node);

struct vxdp_lru *vxdp_lru_new(uint32_t nr_elems, uint32_t ncpus, bool percpu,
                              vxdp_lru_del_fn del, void *arg);
void vxdp_lru_free(struct vxdp_lru *lru);
uint32_t vxdp_lru_pop_free(struct vxdp_lru *lru, uint32_t cpu);  /* may evict; NIL: none */
void vxdp_lru_push_free(struct vxdp_lru *lru, uint32_t node);
void vxdp_lru_set_ref(struct vxdp_lru *lru, uint32_t node);

#endif
