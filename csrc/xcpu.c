/*
 * The round trip of one cache line between two CPUs: a probe of where a machine put them.
 *
 * Theory of operation
 *   Two threads, pinned to cpu_a and cpu_b, pass a counter back and forth through two
 *   cache lines (a writes `ping`, b answers in `pong`), `rounds` times; the answer is the
 *   mean nanoseconds of one round trip, as thread a timed them.  On a VM the figure tells
 *   where the hypervisor placed the two vCPUs now: ~100 ns when they share a cache
 *   complex, ~500 ns when they do not (measured on an AMD EPYC guest, which moves between
 *   the two every few seconds), and a datapath whose producer and consumer sit on those
 *   CPUs pays it on every line they share.  The bench probes it before each window
 *   (vxdp.bench_dpdk), with both CPUs otherwise idle.
 *
 *   A probe never hangs its caller: each side gives up after `timeout_ns` without an
 *   answer (a CPU taken by a busier thread), and the probe fails with -ETIMEDOUT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "vm_int.h"

struct xcpu {
    _Alignas(64) volatile uint64_t ping;
    _Alignas(64) volatile uint64_t pong;
    _Alignas(64) uint32_t cpu_a, cpu_b, rounds;
    uint64_t timeout_ns;
    volatile int stop;
    int rc;                      /* thread a's: 0, -ETIMEDOUT, or a pinning errno */
    int rc_b;
    uint64_t ns;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int pin(uint32_t cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/* Wait until `*word` is `want`; false after `timeout_ns` (checked every 1024 spins). */
static bool wait_for(volatile uint64_t *word, uint64_t want, uint64_t deadline,
                     volatile int *stop)
{
    for (uint32_t spins = 0; __atomic_load_n(word, __ATOMIC_ACQUIRE) != want; spins++) {
        if ((spins & 1023) == 1023 && (*stop || mono_ns() > deadline))
            return false;
    }
    return true;
}

static void *side_b(void *arg)
{
    struct xcpu *x = arg;
    if ((x->rc_b = pin(x->cpu_b)) != 0) {
        x->stop = 1;
        return NULL;
    }
    for (uint64_t i = 1; i <= x->rounds; i++) {
        if (!wait_for(&x->ping, i, mono_ns() + x->timeout_ns, &x->stop))
            break;
        __atomic_store_n(&x->pong, i, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *side_a(void *arg)
{
    struct xcpu *x = arg;
    uint64_t t0;
    if ((x->rc = pin(x->cpu_a)) != 0) {
        x->stop = 1;
        return NULL;
    }
    /* b is up when it answers round 0's ping, whose time is not counted */
    t0 = mono_ns();
    for (uint64_t i = 1; i <= x->rounds; i++) {
        if (i == 2)
            t0 = mono_ns();
        __atomic_store_n(&x->ping, i, __ATOMIC_RELEASE);
        if (!wait_for(&x->pong, i, mono_ns() + x->timeout_ns, &x->stop)) {
            x->rc = -ETIMEDOUT;
            x->stop = 1;
            return NULL;
        }
    }
    x->ns = mono_ns() - t0;
    return NULL;
}

int vxdp_xcpu_rtt(uint32_t cpu_a, uint32_t cpu_b, uint32_t rounds, uint64_t timeout_ns,
                  double *ns, char *err, size_t errlen)
{
    struct xcpu x;
    pthread_t a, b;
    int rc;

    if (rounds < 2 || cpu_a >= CPU_SETSIZE || cpu_b >= CPU_SETSIZE || cpu_a == cpu_b)
        return vxdp_errf(err, errlen, -EINVAL, "a probe between CPU %u and CPU %u of %u "
                         "rounds: two different CPUs and at least 2 rounds", cpu_a, cpu_b,
                         rounds);
    memset(&x, 0, sizeof(x));
    x.cpu_a = cpu_a;
    x.cpu_b = cpu_b;
    x.rounds = rounds;
    x.timeout_ns = timeout_ns;
    if ((rc = pthread_create(&b, NULL, side_b, &x)) != 0)
        return vxdp_errf(err, errlen, -rc, "cannot start a probe thread: %s", strerror(rc));
    if ((rc = pthread_create(&a, NULL, side_a, &x)) != 0) {
        x.stop = 1;
        pthread_join(b, NULL);
        return vxdp_errf(err, errlen, -rc, "cannot start a probe thread: %s", strerror(rc));
    }
    pthread_join(a, NULL);
    x.stop = 1;
    pthread_join(b, NULL);
    if (x.rc_b || (x.rc && x.rc != -ETIMEDOUT))
        return vxdp_errf(err, errlen, x.rc_b ? x.rc_b : x.rc, "cannot pin a probe thread to "
                         "CPU %u: %s", x.rc_b ? cpu_b : cpu_a,
                         strerror(-(x.rc_b ? x.rc_b : x.rc)));
    if (x.rc)
        return vxdp_errf(err, errlen, x.rc, "CPU %u and CPU %u: no answer within %llu ns",
                         cpu_a, cpu_b, (unsigned long long)timeout_ns);
    *ns = (double)x.ns / (double)(rounds - 1);
    return 0;
}
