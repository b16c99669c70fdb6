/*
 * guard.c: what a hostile vhost-user front-end's memory and fds can do to the host.
 *
 * 1. Guest memory that can lose its backing under the host.
 *
 * A vhost-user front-end hands the back-end its memory as fds, which the back-end maps
 * shared.  A front-end that then shrinks such a file (ftruncate on its memfd) makes every
 * later access past the new end raise SIGBUS, and an unhandled SIGBUS ends the host with
 * every guest on it.  The guard is one SIGBUS handler for the process and a table of the
 * address ranges the back-end mapped for its guests.
 *
 * Rule: a SIGBUS inside a guarded range maps anonymous zero pages over the whole range
 * (mmap MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS), records the range as lost with the
 * faulting address, writes 1 to the range's notify eventfd and returns: the access is
 * retried and reads zeros (writes land in pages nobody shares).  Nothing but that guest's
 * memory changes; the edge, woken by the notify fd, ends that guest's session and logs the
 * region.  Any other SIGBUS goes to the disposition the process had before the guard
 * (put back, then the access faults again); a second one that comes back to the guard is
 * left to SIG_DFL.
 *
 * The handler only calls mmap, write and sigaction (raw system calls) and reads the table
 * with atomic loads: registration (any thread) never leaves a half-written slot visible.
 *
 * 2. Front-end eventfds (kick, call, err).  A write to a full eventfd or pipe, or a read
 * of an empty one, waits when the file is in blocking mode, and the file status flags
 * (O_NONBLOCK) belong to the open file description the front-end shares with us.  The
 * edge sets O_NONBLOCK when it takes such an fd (a pipe is reopened as a description of
 * our own); a front-end could clear it again, so every read and write of one goes
 * through vxdp_fd_signal / vxdp_fd_drain:
 *   EAGAIN is "nothing to do": a full counter or pipe already holds an unread
 *   notification (the new one is coalesced into it), an empty one holds no kick.
 *   A call that blocks all the same is interrupted by a watchdog thread once it has
 *   waited VXDP_FD_WAIT_TICKS ticks of VXDP_FD_TICK_MS asleep in the kernel (a thread
 *   merely preempted on a busy machine is left alone), with a signal of its own
 *   (SIGRTMIN + 8, whose handler does nothing and is installed without SA_RESTART), and
 *   reports -ETIMEDOUT: the caller ends that front-end's session.
 * One thread at a time calls these (the edge's event loop).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vxdp_core.h"

enum { SLOT_FREE, SLOT_BUSY, SLOT_ACTIVE, SLOT_LOST };

struct guard_slot {
    int state;                  /* SLOT_*, atomic */
    uintptr_t start, len;
    int notify_fd;
    uintptr_t fault;            /* the address that faulted, once lost */
};

static struct guard_slot slots[VXDP_GUARD_SLOTS];
static struct sigaction previous;
static volatile sig_atomic_t passed_on;

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    uintptr_t addr = (uintptr_t)si->si_addr;
    int saved = errno;

    (void)uctx;
    for (int i = 0; i < VXDP_GUARD_SLOTS; i++) {
        struct guard_slot *s = &slots[i];
        int state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (state != SLOT_ACTIVE && state != SLOT_LOST)
            continue;
        if (addr < s->start || addr - s->start >= s->len)
            continue;
        void *p = mmap((void *)s->start, s->len, PROT_READ | PROT_WRITE,
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;              /* cannot save it: let the fault go on as it would have */
        if (state == SLOT_ACTIVE)
            __atomic_store_n(&s->fault, addr, __ATOMIC_RELAXED);
        __atomic_store_n(&s->state, SLOT_LOST, __ATOMIC_RELEASE);
        if (s->notify_fd >= 0) {
            uint64_t one = 1;
            ssize_t n = write(s->notify_fd, &one, sizeof one);
            (void)n;            /* a full counter is already a pending notification */
        }
        errno = saved;
        return;
    }
    /* Not guest memory: the disposition from before the guard takes it (the access
     * faults again).  Coming back here a second time means that one passes it on to
     * us: the default then. */
    if (passed_on) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
    } else {
        passed_on = 1;
        sigaction(sig, &previous, NULL);
    }
    errno = saved;
}

int vxdp_guard_install(char *err, size_t errlen)
{
    struct sigaction now, ours;

    if (sigaction(SIGBUS, NULL, &now) < 0)
        goto fail;
    if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus)
        return 0;
    previous = now;             /* SIG_DFL, or whoever took SIGBUS (faulthandler) */
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    if (sigaction(SIGBUS, &ours, NULL) < 0)
        goto fail;
    passed_on = 0;
    return 0;
fail:
    snprintf(err, errlen, "SIGBUS handler not installed: %s", strerror(errno));
    return -errno;
}

int vxdp_guard_add(void *start, uint64_t len, int notify_fd, char *err, size_t errlen)
{
    if (!start || !len || (uintptr_t)start + len < (uintptr_t)start) {
        snprintf(err, errlen, "guarded range %p+%#llx is empty or wraps", start,
                 (unsigned long long)len);
        return -EINVAL;
    }
    for (int i = 0; i < VXDP_GUARD_SLOTS; i++) {
        struct guard_slot *s = &slots[i];
        int expect = SLOT_FREE;
        if (!__atomic_compare_exchange_n(&s->state, &expect, SLOT_BUSY, 0, __ATOMIC_ACQUIRE,
                                         __ATOMIC_RELAXED))
            continue;
        s->start = (uintptr_t)start;
        s->len = len;
        s->notify_fd = notify_fd;
        s->fault = 0;
        __atomic_store_n(&s->state, SLOT_ACTIVE, __ATOMIC_RELEASE);
        return i;
    }
    snprintf(err, errlen, "every one of the %d guarded memory ranges is in use",
             VXDP_GUARD_SLOTS);
    return -ENOSPC;
}

int vxdp_guard_remove(int slot)
{
    if (slot < 0 || slot >= VXDP_GUARD_SLOTS)
        return -EINVAL;
    int state = __atomic_load_n(&slots[slot].state, __ATOMIC_ACQUIRE);
    if (state != SLOT_ACTIVE && state != SLOT_LOST)
        return -ENOENT;
    __atomic_store_n(&slots[slot].state, SLOT_FREE, __ATOMIC_RELEASE);
    return 0;
}

int vxdp_guard_lost(int slot, uint64_t *fault)
{
    if (slot < 0 || slot >= VXDP_GUARD_SLOTS)
        return -EINVAL;
    int state = __atomic_load_n(&slots[slot].state, __ATOMIC_ACQUIRE);
    if (state == SLOT_LOST) {
        *fault = __atomic_load_n(&slots[slot].fault, __ATOMIC_RELAXED);
        return 1;
    }
    return state == SLOT_ACTIVE ? 0 : -ENOENT;
}


/* ---- front-end fds ---- */

#define VXDP_FD_TICK_MS 10
#define VXDP_FD_WAIT_TICKS 2

static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;
static int watchdog_errno;
static uint64_t io_seq;         /* odd while a call is in a read or write */
static pthread_t io_thread;
static pid_t io_tid;
static __thread pid_t my_tid;

static int watchdog_signal(void) { return SIGRTMIN + 8; }

static void on_watchdog(int sig) { (void)sig; }

/* Whether thread `tid` sleeps in the kernel (state S or D in /proc): blocked, not merely
 * preempted on a busy machine, which must not be interrupted. */
static int sleeping(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *state = strrchr(buf, ')');   /* after "pid (comm)", comm may hold spaces */
    return state && (state[2] == 'S' || state[2] == 'D');
}

static void *watchdog_main(void *arg)
{
    struct timespec tick = { 0, VXDP_FD_TICK_MS * 1000000L };
    uint64_t seen = 0;
    int ticks = 0;

    (void)arg;
    for (;;) {
        nanosleep(&tick, NULL);
        uint64_t seq = __atomic_load_n(&io_seq, __ATOMIC_ACQUIRE);
        if (!(seq & 1)) {
            ticks = 0;
        } else if (seq != seen) {
            seen = seq;
            ticks = 1;
        } else if (++ticks > VXDP_FD_WAIT_TICKS && sleeping(io_tid)) {
            pthread_kill(io_thread, watchdog_signal());   /* again each tick until out */
        }
    }
    return NULL;
}

static void watchdog_start(void)
{
    struct sigaction sa;
    pthread_attr_t attr;
    pthread_t t;
    sigset_t all, old;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog;       /* no SA_RESTART: the blocked call returns EINTR */
    sigemptyset(&sa.sa_mask);
    if (sigaction(watchdog_signal(), &sa, NULL) < 0) {
        watchdog_errno = errno;
        return;
    }
    /* the thread takes no signal of the process's (Python's handlers want its main thread) */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    watchdog_errno = pthread_create(&t, &attr, watchdog_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int guarded_io(int fd, int writing, char *err, size_t errlen)
{
    static const uint64_t one = 1;
    uint8_t sink[512];
    ssize_t n;

    pthread_once(&watchdog_once, watchdog_start);
    if (watchdog_errno) {
        snprintf(err, errlen, "no watchdog for front-end fds: %s", strerror(watchdog_errno));
        return -watchdog_errno;
    }
    if (!my_tid)
        my_tid = gettid();
    io_thread = pthread_self();
    io_tid = my_tid;
    __atomic_add_fetch(&io_seq, 1, __ATOMIC_ACQ_REL);
    n = writing ? write(fd, &one, sizeof one) : read(fd, sink, sizeof sink);
    int e = errno;
    __atomic_add_fetch(&io_seq, 1, __ATOMIC_ACQ_REL);
    if (n > 0)
        return 1;
    if (n == 0) {               /* a pipe whose writer is gone: no kick, ever */
        snprintf(err, errlen, "end of file (the front-end closed the other end)");
        return -EPIPE;
    }
    if (e == EAGAIN)
        return 0;
    if (e == EINTR) {
        snprintf(err, errlen, "a %s blocked for %d ms (the front-end cleared O_NONBLOCK on "
                 "it) and was interrupted", writing ? "write" : "read",
                 VXDP_FD_TICK_MS * VXDP_FD_WAIT_TICKS);
        return -ETIMEDOUT;
    }
    snprintf(err, errlen, "%s failed: %s", writing ? "write" : "read", strerror(e));
    return -e;
}

int vxdp_fd_signal(int fd, char *err, size_t errlen)
{
    return guarded_io(fd, 1, err, errlen);
}

int vxdp_fd_drain(int fd, char *err, size_t errlen)
{
    return guarded_io(fd, 0, err, errlen);
}
