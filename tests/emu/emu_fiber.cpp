/*
 * emu_fiber.cpp: kernel launches of the host emulation (tests/emu/README.md). A launch runs its blocks one after
 * another; a block's threads are fibers (own stacks, switched by a few instructions of x86-64 assembly) driven by a
 * round-robin scheduler. A fiber runs until it blocks in a barrier or warp collective or returns. Collectives are
 * real rendezvous:
 *   - __syncthreads*: every live thread of the block; all must arrive at the same source site (EMU_STRICT);
 *     threads that returned count as arrived (as on Volta and later).
 *   - warp collectives (shuffles, ballots, __syncwarp, ldmatrix, mma): every lane named in the mask, same mask,
 *     same intrinsic at the same site (__syncwarp may differ in site). A mask naming a lane that has returned, a
 *     shuffle reading a lane outside the mask, or two partial-warp collectives at once are reported as errors.
 *   - warpgroup collectives (wgmma.*): all 128 threads of the warpgroup (the 4 warps whose warp index / 4 is
 *     equal), same instruction at the same site; a warpgroup the block does not fill, or one of whose threads has
 *     returned, is an error.
 * When no fiber can run the block is deadlocked: reported with where each warp waits. Shared memory (static
 * __shared__ variables and the dynamic extern array) lives in one arena per block, filled with 0xFF bytes (NaN) when
 * each block starts, so a read of shared memory no thread of this block wrote shows up.
 */
#include "emu_internal.h"

#include <cstdint>
#include <random>
#include <unordered_map>
#include <sys/mman.h>
#include <vector>

/* ---- context switch (System V x86-64): callee-saved registers, MXCSR and the x87 control word ------------------ */
extern "C" void emu_ctx_switch(void ** save_sp, void * load_sp);
__asm__(R"(
    .pushsection .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .popsection
)");

namespace emu {

uint3 block_idx;
dim3  grid_dim, block_dim;

static void tma_land_on(uint32_t a); /* mbarrier / TMA section below */

namespace {

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t SMEM_ARENA  = 256 * 1024;

/* Per shared byte of the running block: cp.async copies issued (any thread) that have not landed yet. */
uint16_t cp_landing[SMEM_ARENA];

struct cp_req {
    uint32_t     dst;
    const void * src;
    int          bytes, src_bytes, group;
};

struct fiber {
    void *              sp;
    unsigned char *     stack; /* mapping with a guard page at the bottom */
    uint3               tid;
    int                 linear;
    bool                done;
    const unsigned *    wait_gen_ptr; /* blocked until *wait_gen_ptr != wait_gen */
    unsigned            wait_gen;
    const char *        wait_kind;
    const char *        wait_file;
    int                 wait_line;
    uint64_t            xch[2][8]; /* published words, double-buffered by collective parity */
    uint64_t            wgxch[2][8]; /* the same for warpgroup collectives */
    std::vector<cp_req> cp;
    int                 cp_groups;
};

struct warp_state {
    unsigned     gen;
    int          count;
    unsigned     mask, arrived, live;
    const char * kind;
    const char * file;
    int          line;
};

struct wgroup_state {
    unsigned     gen;
    int          count;
    const char * kind;
    const char * file;
    int          line;
};

struct block_state {
    unsigned     gen;
    int          count;
    int          kind, acc;
    int          result[2];
    const char * file;
    int          line;
};

/* mbarriers of the running block, by shared address: the expected arrival count, arrivals still pending in the
   current phase, the transaction count (bytes expected minus bytes completed), the phase number, and a generation
   that waiters watch */
struct mbar_state {
    int       count, pending;
    long long tx;
    unsigned  phase, gen;
};
/* a TMA load issued and not landed yet: its bytes, the mbarrier it completes on, the data to land */
struct tma_req {
    uint32_t                   dst, mbar;
    int                        thread;
    std::vector<unsigned char> data;
};
struct nbar_state {
    int          count, arrived;
    unsigned     gen;
    const char * file;
    int          line;
};
std::unordered_map<uint32_t, mbar_state> mbars;
std::vector<tma_req>                     tma_pending;
nbar_state                               nbars[16];

std::vector<fiber> fibers;
void *             sched_sp;
int                cur = -1;
int                nthreads, live;
warp_state         warps[32];
wgroup_state       wgroups[8];
block_state        blk;
const char *       kernel_name;
void (*body_fn)(void *);
void *             body_ctx;
std::mt19937       shuffle_rng(12345);

alignas(1024) unsigned char smem[SMEM_ARENA];
/* What the async proxy (wgmma) sees: the arena as it was at the last fence.proxy.async of any thread. */
alignas(1024) unsigned char smem_async[SMEM_ARENA];
size_t smem_dyn, smem_top; /* dynamic bytes; end of the static allocations */
std::vector<std::pair<const void *, size_t>> smem_statics;

[[noreturn]] void faultf(const char * fmt, ...) __attribute__((format(printf, 1, 2)));
void faultf(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfault(fmt, ap);
}

fiber & me() { return fibers[(size_t) cur]; }

void yield_to_sched() { emu_ctx_switch(&me().sp, sched_sp); }

/* Blocks the running fiber until *gen changes. */
void wait_for(const unsigned * gen, const char * kind, const char * file, int line) {
    fiber & f    = me();
    f.wait_gen_ptr = gen;
    f.wait_gen     = *gen;
    f.wait_kind    = kind;
    f.wait_file    = file;
    f.wait_line    = line;
    while (*gen == f.wait_gen) yield_to_sched();
    f.wait_gen_ptr = nullptr;
}

void block_complete() {
    blk.result[blk.gen & 1] = blk.kind == 2 ? (blk.acc == blk.count) : blk.acc; /* and: all of them voted */
    blk.count               = 0;
    blk.gen++;
}

void fiber_main() {
    body_fn(body_ctx);
    fiber & f = me();
    if (!f.cp.empty()) faultf("thread returns with %zu cp.async copies never waited for", f.cp.size());
    wg_thread_exit();
    f.done        = true;
    const int w   = f.linear / 32;
    const unsigned bit = 1u << (f.linear % 32);
    warps[w].live &= ~bit;
    live--;
    warp_state & ws = warps[w];
    if (ws.count > 0 && (ws.mask & bit) && !(ws.arrived & bit)) {
        faultf("thread returns while lanes of its warp wait for it in %s at %s:%d (mask 0x%08x)", ws.kind, ws.file,
               ws.line, ws.mask);
    }
    const wgroup_state & gs = wgroups[f.linear / 128];
    if (gs.count > 0) {
        faultf("thread returns while %d threads of its warpgroup wait for it in %s at %s:%d", gs.count, gs.kind,
               gs.file, gs.line);
    }
    if (blk.count > 0 && blk.count >= live) block_complete(); /* a returned thread counts as arrived */
    emu_ctx_switch(&f.sp, sched_sp);
    __builtin_unreachable();
}

void fiber_prepare(fiber & f) {
    if (!f.stack) {
        void * p = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            perror("emu: fiber stack");
            abort();
        }
        f.stack = (unsigned char *) p;
        mprotect(f.stack, 4096, PROT_NONE); /* guard page */
    }
    /* initial frame as emu_ctx_switch leaves it: control words, six registers, the entry as return address, then a
     * fake return address for the entry (so that it starts with the stack aligned as after a call) */
    uint64_t * top = (uint64_t *) (f.stack + STACK_BYTES);
    uint32_t   csr[2];
    __asm__ volatile("stmxcsr %0" : "=m"(csr[0]));
    __asm__ volatile("fnstcw %0" : "=m"(csr[1]));
    top[-1] = 0;
    top[-2] = (uint64_t) (uintptr_t) &fiber_main;
    for (int i = 3; i <= 8; i++) top[-i] = 0;
    memcpy(&top[-9], csr, 8);
    f.sp = &top[-9];
}

void deadlock() {
    fprintf(stderr, "emu: deadlock in kernel %s, block (%u,%u,%u): no thread can continue\n", kernel_name,
            block_idx.x, block_idx.y, block_idx.z);
    for (int w = 0; w * 32 < nthreads; w++) {
        for (int l = 0; l < 32 && w * 32 + l < nthreads; l++) {
            const fiber & f = fibers[(size_t) (w * 32 + l)];
            if (f.done) continue;
            fprintf(stderr, "  warp %d lane %d waits in %s at %s:%d\n", w, l, f.wait_kind, f.wait_file, f.wait_line);
            break; /* the first waiting lane of each warp */
        }
        if (warps[w].count) {
            fprintf(stderr, "  warp %d: %s at %s:%d has lanes 0x%08x of mask 0x%08x\n", w, warps[w].kind,
                    warps[w].file, warps[w].line, warps[w].arrived, warps[w].mask);
        }
    }
    for (int g = 0; g < 8; g++) {
        if (wgroups[g].count) {
            fprintf(stderr, "  warpgroup %d: %s at %s:%d has %d of 128 threads\n", g, wgroups[g].kind,
                    wgroups[g].file, wgroups[g].line, wgroups[g].count);
        }
    }
    if (blk.count) fprintf(stderr, "  __syncthreads at %s:%d: %d of %d live threads arrived\n", blk.file, blk.line,
                           blk.count, live);
    abort();
}

uint64_t block_seq;

void run_block() {
    block_seq++;
    memset(smem, 0xff, smem_top); /* NaN: a read of shared memory this block never wrote shows up */
    memset(smem_async, 0xff, smem_top);
    /* copies never waited for end the run (a thread that returns with one faults), so only defensively: the bytes in
       use, not the whole 512 KiB table, for every block of every launch */
    memset(cp_landing, 0, smem_top * sizeof(cp_landing[0]));
    for (int w = 0; w < 32; w++) warps[w] = warp_state{ 0, 0, 0, 0, 0, nullptr, nullptr, 0 };
    for (int g = 0; g < 8; g++) wgroups[g] = wgroup_state{ 0, 0, nullptr, nullptr, 0 };
    blk  = block_state{ 0, 0, 0, 0, { 0, 0 }, nullptr, 0 };
    mbars.clear();
    tma_pending.clear();
    for (nbar_state & nb : nbars) nb = nbar_state{ 0, 0, 0, nullptr, 0 };
    live = nthreads;
    for (int t = 0; t < nthreads; t++) {
        fiber & f = fibers[(size_t) t];
        f.linear  = t;
        f.tid     = { (unsigned) t % block_dim.x, (unsigned) (t / block_dim.x) % block_dim.y,
                      (unsigned) (t / (block_dim.x * block_dim.y)) };
        f.done         = false;
        f.wait_gen_ptr = nullptr;
        f.cp.clear();
        f.cp_groups = 0;
        warps[t / 32].live |= 1u << (t % 32);
        fiber_prepare(f);
    }
    std::vector<int> order((size_t) nthreads);
    for (int t = 0; t < nthreads; t++) order[(size_t) t] = cfg().sched == 1 ? nthreads - 1 - t : t;
    while (live > 0) {
        if (cfg().sched == 2) std::shuffle(order.begin(), order.end(), shuffle_rng);
        bool ran = false;
        for (int t : order) {
            fiber & f = fibers[(size_t) t];
            if (f.done || (f.wait_gen_ptr && *f.wait_gen_ptr == f.wait_gen)) continue;
            ran = true;
            cur = t;
            emu_ctx_switch(&sched_sp, f.sp);
        }
        if (!ran) {
            if (tma_pending.empty()) deadlock();
            tma_land_on(UINT32_MAX); /* every thread waits: the TMA loads in flight land now */
        }
    }
    cur = -1;
    for (int id = 1; id < 16; id++) {
        if (nbars[id].arrived) {
            faultf("block ends with %d of %d threads arrived at named barrier %d (from %s:%d): an arrival nobody "
                   "waited for", nbars[id].arrived, nbars[id].count, id, nbars[id].file, nbars[id].line);
        }
    }
    if (!tma_pending.empty()) {
        faultf("block ends with %zu TMA loads whose mbarrier nobody waited for (the first by thread %d into shared "
               "bytes [%u, %zu))", tma_pending.size(), tma_pending[0].thread, tma_pending[0].dst,
               tma_pending[0].dst + tma_pending[0].data.size());
    }
}

} // namespace

/* ---- interface for emu_device.h -------------------------------------------------------------------------------- */

const char * current_kernel() { return kernel_name; }

void vfault(const char * fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "emu: ");
    if (kernel_name && cur >= 0) {
        const fiber & f = fibers[(size_t) cur];
        fprintf(stderr, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): ", kernel_name, block_idx.x, block_idx.y,
                block_idx.z, f.tid.x, f.tid.y, f.tid.z);
    } else if (kernel_name) {
        fprintf(stderr, "kernel %s: ", kernel_name);
    }
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

void fault(const char * fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfault(fmt, ap);
}

const uint3 & thread_idx() { return me().tid; }
int           lane() { return me().linear % 32; }
int           thread_linear() { return me().linear; }
uint64_t      block_serial() { return block_seq; }

void sync_block(const char * file, int line) { (void) sync_block_reduce(0, 0, file, line); }

int sync_block_reduce(int kind, int pred, const char * file, int line) {
    if (blk.count == 0) {
        blk.kind = kind;
        blk.acc  = 0;
        blk.file = file;
        blk.line = line;
    } else if (blk.kind != kind || (cfg().strict && (blk.line != line || strcmp(blk.file, file) != 0))) {
        faultf("divergent barrier: this thread is at %s:%d, other threads of the block wait at %s:%d", file, line,
               blk.file, blk.line);
    }
    blk.acc += pred != 0; /* or, and, count: all count the true votes */
    const unsigned g = blk.gen;
    if (++blk.count >= live) {
        block_complete();
    } else {
        wait_for(&blk.gen, "__syncthreads", file, line);
    }
    const int r = blk.result[g & 1];
    return kind == 1 ? r != 0 : r;
}

const uint64_t * warp_gather(unsigned mask, const uint64_t * words, int n, const char * kind, const char * file,
                             int line) {
    fiber &        f   = me();
    const int      w   = f.linear / 32, l = f.linear % 32;
    const unsigned bit = 1u << l;
    warp_state &   ws  = warps[w];
    const bool     syncwarp = strcmp(kind, "__syncwarp") == 0;
    if (!(mask & bit)) faultf("%s at %s:%d with mask 0x%08x that does not name the calling lane %d", kind, file, line, mask, l);
    const unsigned exist = (w * 32 + 32 <= nthreads) ? 0xffffffffu : ((1u << (nthreads - w * 32)) - 1u);
    if (mask & ~exist) faultf("%s at %s:%d: mask 0x%08x names lanes the block does not have", kind, file, line, mask);
    if (mask & ~ws.live & exist) {
        faultf("%s at %s:%d: mask 0x%08x names lanes that have returned (live 0x%08x)", kind, file, line, mask, ws.live);
    }
    if (ws.count == 0) {
        ws.mask    = mask;
        ws.arrived = 0;
        ws.kind    = kind;
        ws.file    = file;
        ws.line    = line;
    } else if (ws.mask != mask) {
        faultf("%s at %s:%d with mask 0x%08x while lanes 0x%08x wait in %s at %s:%d with mask 0x%08x (divergent or "
               "concurrent partial-warp collectives)", kind, file, line, mask, ws.arrived, ws.kind, ws.file, ws.line,
               ws.mask);
    } else if (strcmp(ws.kind, kind) != 0 || (!syncwarp && (ws.line != line || strcmp(ws.file, file) != 0))) {
        faultf("divergent warp collective: this lane is in %s at %s:%d, lanes 0x%08x in %s at %s:%d", kind, file, line,
               ws.arrived, ws.kind, ws.file, ws.line);
    }
    const unsigned g = ws.gen;
    for (int i = 0; i < n; i++) f.xch[g & 1][i] = words[i];
    ws.arrived |= bit;
    if (++ws.count == __builtin_popcount(mask)) {
        ws.count = 0;
        ws.gen++;
    } else {
        wait_for(&ws.gen, kind, file, line);
    }
    /* the lanes' words, read in place: gather into a per-parity table of this warp */
    static uint64_t table[32][2][32][8];
    for (int s = 0; s < 32; s++) {
        if (!(mask & (1u << s))) continue;
        memcpy(table[w][g & 1][s], fibers[(size_t) (w * 32 + s)].xch[g & 1], sizeof(uint64_t) * (size_t) n);
    }
    return &table[w][g & 1][0][0];
}

static wgroup_state & warpgroup_check(int g, const char * kind, const char * file, int line) {
    if ((g + 1) * 128 > nthreads) {
        faultf("%s at %s:%d: warpgroup %d needs threads [%d, %d), the block has %d", kind, file, line, g, g * 128,
               g * 128 + 128, nthreads);
    }
    for (int w = 4 * g; w < 4 * g + 4; w++) {
        if (warps[w].live != 0xffffffffu) {
            faultf("%s at %s:%d: threads of warpgroup %d have returned (warp %d live 0x%08x)", kind, file, line, g, w,
                   warps[w].live);
        }
    }
    wgroup_state & gs = wgroups[g];
    if (gs.count == 0) {
        gs.kind = kind;
        gs.file = file;
        gs.line = line;
    } else if (strcmp(gs.kind, kind) != 0 || gs.line != line || strcmp(gs.file, file) != 0) {
        faultf("divergent warpgroup collective: this thread is in %s at %s:%d, %d threads of its warpgroup in %s at "
               "%s:%d", kind, file, line, gs.count, gs.kind, gs.file, gs.line);
    }
    return gs;
}

const uint64_t * warpgroup_gather(const uint64_t * words, int n, const char * kind, const char * file, int line) {
    fiber &        f   = me();
    const int      g   = f.linear / 128;
    wgroup_state & gs  = warpgroup_check(g, kind, file, line);
    const unsigned gen = gs.gen;
    for (int i = 0; i < n; i++) f.wgxch[gen & 1][i] = words[i];
    if (++gs.count == 128) {
        gs.count = 0;
        gs.gen++;
    } else {
        wait_for(&gs.gen, kind, file, line);
    }
    static uint64_t table[8][2][128][8];
    for (int s = 0; s < 128; s++) {
        memcpy(table[g][gen & 1][s], fibers[(size_t) (g * 128 + s)].wgxch[gen & 1], sizeof(uint64_t) * (size_t) n);
    }
    return &table[g][gen & 1][0][0];
}

void sync_warp(const char * file, int line, unsigned mask) { (void) warp_gather(mask, nullptr, 0, "__syncwarp", file, line); }

uint64_t exchange(unsigned mask, uint64_t v, int src, const char * kind, const char * file, int line) {
    const uint64_t * t = warp_gather(mask, &v, 1, kind, file, line);
    if (src < 0 || src > 31 || !(mask & (1u << src))) {
        faultf("%s at %s:%d reads lane %d, which is not in the mask 0x%08x (undefined value)", kind, file, line, src, mask);
    }
    return t[src * 8];
}

unsigned ballot(unsigned mask, int pred, const char * kind, const char * file, int line) {
    const uint64_t   v = pred != 0;
    const uint64_t * t = warp_gather(mask, &v, 1, kind, file, line);
    unsigned         r = 0;
    for (int s = 0; s < 32; s++) {
        if ((mask & (1u << s)) && t[s * 8]) r |= 1u << s;
    }
    return r;
}

/* ---- shared memory --------------------------------------------------------------------------------------------- */

void * smem_static(const void * key, size_t size, size_t align, const char * name) {
    for (const auto & kv : smem_statics) {
        if (kv.first == key) return smem + kv.second;
    }
    if (align < 16) align = 16;
    const size_t off = (smem_top + align - 1) & ~(align - 1);
    size_t       statics = off + size - smem_dyn;
    if (statics > 48 * 1024) faultf("__shared__ %s: %zu bytes of static shared memory, more than 48 KiB", name, statics);
    if (off + size > (size_t) cfg().smem_optin) {
        faultf("__shared__ %s: %zu bytes of dynamic and static shared memory, more than sm_%d's %d", name, off + size,
               cfg().cc, cfg().smem_optin);
    }
    memset(smem + smem_top, 0xff, off + size - smem_top); /* first use in this launch: poison it */
    memset(smem_async + smem_top, 0xff, off + size - smem_top);
    smem_top = off + size;
    smem_statics.emplace_back(key, off);
    return smem + off;
}

void * smem_dynamic() { return smem; }

uint32_t cvta_shared(const void * p) {
    const unsigned char * c = (const unsigned char *) p;
    if (c < smem || c >= smem + smem_top) faultf("__cvta_generic_to_shared(%p): not a shared-memory address", p);
    return (uint32_t) (c - smem);
}

unsigned char * smem_arena() { return smem; }
const unsigned char * smem_async_view() { return smem_async; }
void fence_proxy_async() { memcpy(smem_async, smem, smem_top); }
size_t          smem_in_use() { return smem_top; }

/* ---- cp.async -------------------------------------------------------------------------------------------------- */

static void cp_landing_add(const cp_req & c, int d) {
    for (int b = 0; b < c.bytes; b++) cp_landing[c.dst + (uint32_t) b] = (uint16_t) (cp_landing[c.dst + (uint32_t) b] + d);
}

const char * cp_pending_at(uint32_t a, int n) {
    bool any = false;
    for (int b = 0; b < n && !any; b++) any = a + (uint32_t) b < SMEM_ARENA && cp_landing[a + (uint32_t) b] != 0;
    if (!any) return nullptr;
    static char msg[160];
    for (int t = 0; t < nthreads; t++) {
        for (const cp_req & c : fibers[(size_t) t].cp) {
            if (c.dst < a + (uint32_t) n && a < c.dst + (uint32_t) c.bytes) {
                snprintf(msg, sizeof(msg), "the cp.async of thread %d into shared bytes [%u, %u), not waited for yet",
                         t, c.dst, c.dst + (uint32_t) c.bytes);
                return msg;
            }
        }
    }
    for (const tma_req & q : tma_pending) {
        if (q.dst < a + (uint32_t) n && a < q.dst + (uint32_t) q.data.size()) {
            snprintf(msg, sizeof(msg), "the TMA load of thread %d into shared bytes [%u, %zu), whose mbarrier at %u "
                                       "nobody has waited for yet", q.thread, q.dst, q.dst + q.data.size(), q.mbar);
            return msg;
        }
    }
    return "a cp.async not waited for yet";
}

/* The copy lands. (A landing under an mma_async in flight needs the op to have been issued while the copy was
   pending, which cp_pending_at already reports at the op's issue.) */
static void cp_do(const cp_req & c) {
    if (c.src_bytes > 0) memcpy(smem + c.dst, c.src, (size_t) c.src_bytes);
    if (c.bytes > c.src_bytes) memset(smem + c.dst + c.src_bytes, 0, (size_t) (c.bytes - c.src_bytes));
}

void cp_async(uint32_t dst, const void * src, int bytes, int src_bytes) {
    if ((size_t) dst + (size_t) bytes > smem_top) faultf("cp.async to shared bytes [%u, %u) outside the %zu in use", dst, dst + bytes, smem_top);
    if (src_bytes > 0 && !is_device(src, (size_t) src_bytes)) {
        faultf("cp.async reads %d bytes at %p, not inside one device allocation", src_bytes, src);
    }
    wg_check_shared_write(dst, bytes, "cp.async");
    const cp_req c = { dst, src, bytes, src_bytes, me().cp_groups };
    if (cfg().cp_early) {
        cp_do(c);
    } else {
        me().cp.push_back(c);
        cp_landing_add(c, 1);
    }
}

void cp_commit() { me().cp_groups++; }

void cp_wait(int n) {
    fiber &             f = me();
    std::vector<cp_req> keep;
    for (const cp_req & c : f.cp) {
        if (c.group < f.cp_groups - n) {
            cp_landing_add(c, -1);
            cp_do(c);
        } else {
            keep.push_back(c);
        }
    }
    f.cp.swap(keep);
}

/* ---- mbarrier, TMA, named barriers ----------------------------------------------------------------------------- */

static mbar_state & mbar_at(uint32_t a, const char * what) {
    auto it = mbars.find(a);
    if (it == mbars.end()) faultf("%s on shared address %u: no mbarrier initialized there in this block", what, a);
    return it->second;
}

/* The TMA load lands: its bytes reach both views of shared memory (TMA writes through the async proxy, so wgmma may
   read them without a fence.proxy.async; generic reads after the mbarrier wait see them too). */
static void tma_land(const tma_req & q) {
    for (size_t b = 0; b < q.data.size(); b++) cp_landing[q.dst + b]--;
    memcpy(smem + q.dst, q.data.data(), q.data.size());
    memcpy(smem_async + q.dst, q.data.data(), q.data.size());
}

static void mbar_try_complete(mbar_state & st) {
    if (st.pending == 0 && st.tx == 0) {
        st.phase++;
        st.gen++;
        st.pending = st.count;
    }
}

/* Lands the pending TMA loads that complete on mbarrier a (every one when a == UINT32_MAX), completing their bytes
   on their barriers (which may complete a phase and wake its waiters). */
static void tma_land_on(uint32_t a) {
    std::vector<tma_req>  keep;
    std::vector<uint32_t> done;
    for (tma_req & q : tma_pending) {
        if (a == UINT32_MAX || q.mbar == a) {
            tma_land(q);
            mbar_at(q.mbar, "TMA completion").tx -= (long long) q.data.size();
            done.push_back(q.mbar);
        } else {
            keep.push_back(std::move(q));
        }
    }
    tma_pending.swap(keep);
    for (uint32_t b : done) mbar_try_complete(mbar_at(b, "TMA completion"));
}

void mbar_init(uint32_t a, int count) {
    if (a % 8 || (size_t) a + 8 > smem_top) faultf("mbarrier.init at shared address %u: not 8-byte aligned or outside the %zu bytes in use", a, smem_top);
    if (count < 1 || count > (1 << 20) - 1) faultf("mbarrier.init at %u: count %d (1 .. 2^20 - 1)", a, count);
    for (const tma_req & q : tma_pending) {
        if (q.mbar == a) faultf("mbarrier.init at %u while a TMA load still completes on it", a);
    }
    mbars[a] = mbar_state{ count, count, 0, 0, 0 };
    memset(smem + a, 0, 8); /* the object's bytes (their content is opaque) */
    memset(smem_async + a, 0, 8);
}

void mbar_arrive(uint32_t a, long long expect_tx) {
    mbar_state & st = mbar_at(a, "mbarrier.arrive");
    if (expect_tx < 0 || expect_tx > (1 << 20) - 1) faultf("mbarrier.arrive.expect_tx at %u: %lld bytes", a, expect_tx);
    st.tx += expect_tx;
    if (--st.pending < 0) faultf("mbarrier.arrive at %u: more arrivals than its count %d in one phase", a, st.count);
    mbar_try_complete(st);
}

void mbar_wait_parity(uint32_t a, unsigned parity, const char * file, int line) {
    mbar_state & st = mbar_at(a, "mbarrier.try_wait");
    /* TMA loads land only when no thread can run any more (run_block): as late as the GPU could land them */
    while ((st.phase & 1u) == (parity & 1u)) wait_for(&st.gen, "mbarrier.try_wait.parity", file, line);
}

void tma_load(uint32_t dst, const void * map, const int32_t * coords, int n, uint32_t mbar) {
    tmap m;
    if (!map) faultf("cp.async.bulk.tensor: NULL tensor map");
    memcpy(&m, map, sizeof(m));
    if (m.magic != TMAP_MAGIC) faultf("cp.async.bulk.tensor: %p is not a tensor map from cuTensorMapEncodeTiled", map);
    if (n != m.rank) faultf("cp.async.bulk.tensor: %d coordinates for a rank-%d tensor map", n, (int) m.rank);
    (void) mbar_at(mbar, "cp.async.bulk.tensor (its mbarrier)");
    size_t bytes = m.esize;
    for (int i = 0; i < n; i++) bytes *= m.box[i];
    if (dst % 128 || (size_t) dst + bytes > smem_top) {
        faultf("cp.async.bulk.tensor into shared bytes [%u, %zu): not 128-byte aligned or outside the %zu in use", dst,
               dst + bytes, smem_top);
    }
    const int span = m.swizzle ? 16 << m.swizzle : 0; /* 32, 64, 128 bytes */
    const int row  = m.box[0] * m.esize;
    if (span && row != span) faultf("cp.async.bulk.tensor: a swizzled box whose inner dimension (%d bytes) is not the swizzle span (%d): not emulated", row, span);
    wg_check_shared_write(dst, (int) bytes, "TMA load");
    tma_req q;
    q.dst    = dst;
    q.mbar   = mbar;
    q.thread = thread_linear();
    q.data.assign(bytes, 0);
    /* box element (i0, .., i4) at linear offset ((i4 b3 + i3) b2 + ...) b0 + i0 (times esize) from dst, then the
       swizzle on the shared address (as wgmma reads it): 16-byte chunk bits [4, 4 + s) XOR bits [7, 7 + s), s = 1, 2, 3
       for 32B, 64B, 128B */
    int64_t idx[5] = { 0, 0, 0, 0, 0 };
    const size_t rows = bytes / (size_t) row;
    for (size_t r = 0; r < rows; r++) {
        size_t rr = r;
        bool   in = true;
        const unsigned char * src = (const unsigned char *) (uintptr_t) m.addr;
        for (int i = 1; i < n; i++) {
            idx[i] = (int64_t) coords[i] + (int64_t) (rr % m.box[i]);
            rr /= m.box[i];
            if (idx[i] < 0 || idx[i] > (int64_t) m.dim_m1[i]) in = false;
            src += idx[i] * (int64_t) m.stride[i - 1];
        }
        for (int e = 0; e < m.box[0]; e++) {
            const int64_t g0   = (int64_t) coords[0] + e;
            const uint32_t lin = (uint32_t) (r * (size_t) row + (size_t) e * m.esize);
            uint32_t phys      = dst + lin;
            if (span) phys ^= ((phys >> 7) & (uint32_t) ((1 << m.swizzle) - 1)) << 4;
            unsigned char * out = q.data.data() + (phys - dst);
            if (!in || g0 < 0 || g0 > (int64_t) m.dim_m1[0]) {
                if (m.oob_nan) memset(out, 0xff, m.esize);
                continue;
            }
            const unsigned char * p = src + g0 * m.esize;
            if (!is_device(p, m.esize)) faultf("cp.async.bulk.tensor reads %p (element %lld of row %zu), not inside one device allocation", (const void *) p, (long long) g0, r);
            memcpy(out, p, m.esize);
        }
    }
    for (size_t b = 0; b < bytes; b++) cp_landing[dst + b]++;
    tma_pending.push_back(std::move(q));
    if (cfg().cp_early) tma_land_on(mbar); /* EMU_CP_ASYNC=early: land at issue */
    mbar_try_complete(mbar_at(mbar, "cp.async.bulk.tensor"));
}

void named_barrier(int id, int count, bool wait, const char * file, int line) {
    if (id < 1 || id > 15) faultf("bar %d at %s:%d: named barriers are 1 .. 15 here (0 is __syncthreads)", id, file, line);
    if (count < 32 || count % 32 || count > nthreads) faultf("bar %d at %s:%d: thread count %d (a multiple of 32, at most the block's %d)", id, file, line, count, nthreads);
    nbar_state & nb = nbars[id];
    if (nb.arrived == 0) {
        nb.count = count;
        nb.file  = file;
        nb.line  = line;
    } else if (nb.count != count) {
        faultf("bar %d at %s:%d with count %d while other threads are at it with %d (%s:%d)", id, file, line, count, nb.count, nb.file, nb.line);
    }
    if (++nb.arrived >= nb.count) {
        nb.arrived = 0;
        nb.gen++;
    } else if (wait) {
        wait_for(&nb.gen, "bar.sync", file, line);
    }
}

/* ---- launch ---------------------------------------------------------------------------------------------------- */

void launch(const char * name, const void * key, dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream,
            void (*body)(void *), void * ctx) {
    init();
    const uint64_t nt = (uint64_t) block.x * block.y * block.z;
    if (nt == 0 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
        grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
        warn("launch of %s with grid (%u,%u,%u) block (%u,%u,%u): invalid configuration", name, grid.x, grid.y,
             grid.z, block.x, block.y, block.z);
        set_last_error(cudaErrorInvalidConfiguration);
        return;
    }
    if (smem_bytes > (size_t) func_max_dynamic_smem(key)) {
        warn("launch of %s with %zu bytes of dynamic shared memory, above its limit of %d (set "
             "cudaFuncAttributeMaxDynamicSharedMemorySize first)", name, smem_bytes, func_max_dynamic_smem(key));
        set_last_error(cudaErrorInvalidValue);
        return;
    }
    if (!stream_valid(stream)) {
        warn("launch of %s on stream %p, which is not a live stream", name, (void *) stream);
        set_last_error(cudaErrorInvalidResourceHandle);
        return;
    }
    if (cfg().verbose) {
        fprintf(stderr, "emu: launch %s grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", name, grid.x, grid.y, grid.z,
                block.x, block.y, block.z, smem_bytes);
    }
    device_scope ds;
    kernel_name = name;
    body_fn     = body;
    body_ctx    = ctx;
    grid_dim    = grid;
    block_dim   = block;
    nthreads    = (int) nt;
    smem_dyn    = smem_bytes;
    smem_top    = smem_bytes;
    smem_statics.clear();
    if (fibers.size() < (size_t) nthreads) fibers.resize((size_t) nthreads);
    /* blocks one after another: x fastest, or (EMU_SCHED) in reverse or shuffled order, since real blocks run in
     * any order and concurrently */
    const uint64_t nb = (uint64_t) grid.x * grid.y * grid.z;
    std::vector<uint64_t> perm;
    if (cfg().sched == 2) {
        perm.resize((size_t) nb);
        for (uint64_t i = 0; i < nb; i++) perm[(size_t) i] = i;
        std::shuffle(perm.begin(), perm.end(), shuffle_rng);
    }
    for (uint64_t i = 0; i < nb; i++) {
        const uint64_t b = cfg().sched == 1 ? nb - 1 - i : cfg().sched == 2 ? perm[(size_t) i] : i;
        block_idx = { (unsigned) (b % grid.x), (unsigned) (b / grid.x % grid.y), (unsigned) (b / ((uint64_t) grid.x * grid.y)) };
        run_block();
    }
    kernel_name = nullptr;
}

} // namespace emu
