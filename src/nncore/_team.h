/* The barrier the two threads of a training step meet at (_team_step in _kernels.pyx).

   A step on two threads is one stream of work cut wherever one thread needs what the other
   wrote (around each dense layer's product, which they split by units while splitting the
   rest by rows; the batch's logits for the loss; every row's gradient for the weight
   gradients; every weight gradient for the update; both halves' finiteness verdicts; the
   updated weights). The waits are short and many (thousands per second), so a thread
   waiting here spins, with the CPU's pause hint, rather than sleeping in the kernel: waking
   a sleeping thread takes longer than most of the waits. After NNCORE_SPINS spins (the
   other thread was descheduled) it yields the CPU on each further turn instead. A barrier
   can be aborted (nncore_barrier_abort): when one thread never comes (its Python caller was
   interrupted before it started), the other leaves its wait instead of spinning for ever.

   Needs the GCC/Clang __atomic builtins; elsewhere NNCORE_HAVE_TEAM is 0 and nncore.ops
   runs every step on one thread. */
#ifndef NNCORE_TEAM_H
#define NNCORE_TEAM_H

#if defined(__GNUC__) || defined(__clang__)
#define NNCORE_HAVE_TEAM 1
#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define NNCORE_YIELD() sched_yield()
#else
#define NNCORE_YIELD() ((void) 0)
#endif
#if defined(__x86_64__) || defined(__i386__)
#define NNCORE_PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define NNCORE_PAUSE() __asm__ __volatile__("yield")
#else
#define NNCORE_PAUSE() ((void) 0)
#endif

/* Pause-spins before a waiting thread starts yielding the CPU: about 20-50 us. Far more
   (100,000) made a step 300 times slower when another process held one of the two CPUs:
   both threads then share one, and each wait spun for milliseconds before letting the
   other run. */
#define NNCORE_SPINS 1000

typedef struct {
    int arrived;     /* threads at the barrier in this round */
    int generation;  /* rounds completed: a waiting thread leaves when it changes */
    int aborted;     /* set by nncore_barrier_abort: every wait returns 1 at once */
} nncore_barrier;

static void nncore_barrier_init(nncore_barrier *b) {
    __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->aborted, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&b->generation, 0, __ATOMIC_RELEASE);
}

static void nncore_barrier_abort(nncore_barrier *b) {
    __atomic_store_n(&b->aborted, 1, __ATOMIC_RELEASE);
}

/* Wait until all `members` threads have called this for the round, and return 0; every
   write a thread made before it is visible to the others after it. Returns 1 if the
   barrier was aborted before (or while) waiting. */
static int nncore_barrier_wait(nncore_barrier *b, int members) {
    int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&b->aborted, __ATOMIC_ACQUIRE))
        return 1;
    if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == members) {
        __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, generation + 1, __ATOMIC_RELEASE);
        return 0;
    }
    for (long spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == generation;
         spins++) {
        if (__atomic_load_n(&b->aborted, __ATOMIC_ACQUIRE))
            return 1;
        if (spins < NNCORE_SPINS)
            NNCORE_PAUSE();
        else
            NNCORE_YIELD();
    }
    return 0;
}

#else
#define NNCORE_HAVE_TEAM 0
typedef struct { int arrived, generation, aborted; } nncore_barrier;
static void nncore_barrier_init(nncore_barrier *b) { b->arrived = 0; }
static void nncore_barrier_abort(nncore_barrier *b) { b->aborted = 1; }
static int nncore_barrier_wait(nncore_barrier *b, int members) {
    (void) b; (void) members;
    return 1;  /* never called: TEAM_STEP is False */
}
#endif

#endif
