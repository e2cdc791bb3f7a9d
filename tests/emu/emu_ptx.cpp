/*
 * emu_ptx.cpp: the inline PTX of rk's kernels, interpreted (tests/emu/README.md). cu2cpp.py turns each asm statement
 * into emu::run_asm(template, operands); the template is parsed once and cached. Instructions:
 *   cp.async.{ca,cg}.shared.global [dst], [src], size{, src_size};  cp.async.commit_group;  cp.async.wait_group N;
 *   cp.async.wait_all                                                  (sm_80+; queued per thread, see emu_fiber.cpp)
 *   ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared{::cta}.b16    (sm_75+; a warp collective)
 *   mma.sync.aligned.{m16n8k16,m16n8k8}.row.col.f32.{f16,bf16}.{f16,bf16}.f32   (a warp collective; k16 and bf16
 *                                                                        need sm_80, f16 k8 sm_75)
 *   ex2.approx{.ftz}.f32;  ld.shared{::cta}.{f32,b32,u32,s32}
 *   { .reg .pred p; setp.{eq,ne}.{b32,u32,s32} p, a, b; ... }         (scoped blocks with predicate registers)
 *   wgmma.fence.sync.aligned;  wgmma.commit_group.sync.aligned;  wgmma.wait_group.sync.aligned N;
 *   wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16.f16,bf16.bf16} {d}, a-desc|{a0,a1,a2,a3}, b-desc, scale-d,
 *       imm-scale-a, imm-scale-b{, imm-trans-a}, imm-trans-b        (N = 8..256 step 8; sm_90a; warpgroup collectives)
 *   fence.proxy.async{.shared::cta}                                   (sm_90)
 *   mbarrier.init.shared{::cta}.b64 [a], count;  mbarrier.arrive{.expect_tx}.shared{::cta}.b64 _|%state, [a]{, tx};
 *   mbarrier.try_wait.parity.shared{::cta}.b64 p, [a], parity;  selp.{b32,u32} d, a, b, p;
 *   fence.mbarrier_init.release.cluster;                              (sm_90; mbarrier: emu_fiber.cpp)
 *   cp.async.bulk.tensor.{1..5}d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [dst], [map, {c0, ..}],
 *       [mbar]                                                        (TMA tile loads, sm_90; emu_fiber.cpp)
 *   bar.sync id, count;  bar.arrive id, count                         (named barriers 1..15)
 *   setmaxnreg.{inc,dec}.sync.aligned.u32 N                           (sm_90a; a warpgroup collective, no effect here)
 * Fragment layouts follow the PTX ISA's figures for mma.m16n8k16 / m16n8k8 and ldmatrix. Products of 16-bit inputs
 * are exact in fp32; the emulation adds them to the accumulator one k at a time with fmaf (real tensor cores add in
 * an unspecified order and internal precision).
 *
 * wgmma follows the PTX ISA (version 8.x) section 9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate
 * Instructions": 9.7.15.5.1.1.1 "Matrix Fragments for wgmma.mma_async.m64nNk16" (Figures 148 and 149: A in registers
 * and the accumulator D; they are figures, so cross-checked against CUTLASS's ALayout_64x16 / CLayout_64xN in
 * cute/atom/mma_traits_sm90_gmma.hpp), 9.7.15.5.1.2 "Shared Memory Matrix Layout" with 9.7.15.5.1.2.1.x "Leading
 * Dimension Byte Offset", "Stride Dimension Byte Offset" and "Canonical Layouts" (the CuTe-notation table), and
 * 9.7.15.5.1.2.2 "Matrix Descriptor Format". Thread T of a warpgroup, w = T / 32, g = (T % 32) / 4, t = T % 4:
 *   D (64 x N, f32): d[i] is row 16 w + g + 8 ((i / 2) % 2), column 8 (i / 4) + 2 t + (i % 2)
 *   A (64 x 16, 16-bit, registers): a[r] holds the element pair (row 16 w + g + 8 (r % 2), columns 2 t + 8 (r / 2)
 *     + {0 (low half), 1 (high half)})
 * Shared-memory operands, 16-bit elements (T = 8 per 16 bytes), element (mn, k) of A (mn = m) or B (mn = n), byte
 * offset from the descriptor's start address, W the swizzle width in bytes (128, 64, 32):
 *   K-major, swizzled ((8,m),(T,2k)):((W/2,SBO),(1,T)) elements:  (mn % 8) W + (mn / 8) SBO + 2 k       (LBO unused)
 *   K-major, no swizzle ((8,m),(T,2k)):((T,SBO),(1,LBO)):         (mn % 8) 16 + (mn / 8) SBO + 2 (k % 8) + (k / 8) LBO
 *   MN-major, swizzled ((T,W/16,m),(8,k)):((1,T,LBO),(W/2,SBO)):  2 (mn % (W/2)) + (mn / (W/2)) LBO + (k % 8) W
 *                                                                 + (k / 8) SBO
 *   MN-major, no swizzle ((T,1,m),(8,k)):((1,T,SBO),(T,LBO)):     2 (mn % 8) + (mn / 8) SBO + (k % 8) 16 + (k / 8) LBO
 * then the swizzle (CuTe Swizzle<B,4,3>) on the shared address itself: 128B XORs address bits [4,7) with [7,10),
 * 64B bits [4,6) with [7,9), 32B bit 4 with bit 7; with base offset 0 the pattern repeats on 1024/512/256-byte
 * boundaries of the address. A non-zero base offset is not emulated (an error). The contiguous run of a swizzled
 * operand must stay inside one W-byte row (start % W + in-row offset < W), else an error.
 * Asynchrony (PTX ISA 9.7.15.6 and 9.7.15.7: the accumulators and the shared-memory operands of an mma_async may
 * be accessed only after a wgmma.wait_group that waits for its group): mma_async reads its operands and computes D
 * at issue, but D reaches the accumulator variables only when a wgmma.wait_group retires the op (commit_group puts
 * the thread's uncommitted ops into one group; wait_group N retires every group but the N newest). Until then each
 * accumulator holds a poison NaN (0x7fbadbad), so a kernel that reads it early computes with NaN; a chain of
 * mma_async on the same accumulators reads the value in flight (their ordering is implicit). Errors:
 *   - an accumulator written by the thread while an mma_async that produces it is in flight (found at the retire:
 *     the variable no longer holds the poison);
 *   - shared bytes an in-flight mma_async reads changed before its retire (generic stores: compared at the retire),
 *     or the target of a cp.async issued while an mma_async of any thread of the block still reads them (a copy
 *     issued before the op and landing during it is caught at the op's issue: a read of bytes still landing);
 *   - an accumulator that a retired mma_async wrote, then the thread changed, used by the next mma_async with no
 *     wgmma.fence of the thread in between (the rule of 9.7.15.6.1 "register accesses ... need a wgmma.fence",
 *     seen only for writes: a read of a register by other code leaves no trace);
 *   - a thread that returns with mma_async ops never retired.
 * Not seen: A fragments in registers changed before the retire (they are passed by value). Checked besides: every
 * thread of the warpgroup arrives at the same site with the same descriptors, immediates and scale-d; a wgmma.fence
 * before the warpgroup's first mma_async; shared bytes inside the arena in use; and (the async proxy) that the
 * bytes wgmma reads are what they were at the last fence.proxy.async of any thread, i.e. no generic-proxy write
 * (st.shared, cp.async landing) since then. Every PTX read of shared memory here (wgmma operands, ldmatrix,
 * ld.shared) is also an error when a cp.async of any thread of the block, issued and not yet waited for, targets
 * those bytes: on the GPU the copy may land before or after the read (here it lands at the wait, so the read would
 * silently see the old bytes).
 */
#include "emu_internal.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace emu {
namespace {

struct operand {
    enum { REG, LIST, ADDR, IMM, PRED, SINK } kind; /* PRED: a predicate register of the block, idx[0] its number;
                                                       SINK: "_" */
    std::vector<int> idx; /* operand numbers (%n) */
    long long        imm;
};

enum op_kind { CP_ASYNC, CP_COMMIT, CP_WAIT, CP_WAIT_ALL, LDMATRIX, MMA, EX2, LD_SHARED, SETP, WG_FENCE, WG_COMMIT,
               WG_WAIT, WG_MMA, FENCE_PROXY_ASYNC, MB_INIT, MB_ARRIVE, MB_TRY_WAIT, SELP, FENCE_MB_INIT, TMA_LOAD, BAR,
               SETMAXNREG };
constexpr int MAX_PREDS = 8;

struct instr {
    op_kind              op;
    std::string          text;
    int                  size   = 0;     /* cp.async bytes */
    int                  nmat   = 0;     /* ldmatrix matrices */
    bool                 trans  = false; /* ldmatrix .trans */
    int                  k      = 0;     /* mma k */
    bool                 bf16   = false; /* mma inputs */
    bool                 ftz    = false;
    bool                 ne     = false; /* setp.ne (else eq) */
    int                  n      = 0;     /* wgmma N */
    bool                 a_regs = false; /* wgmma A in registers */
    bool                 tx     = false; /* mbarrier.arrive.expect_tx */
    bool                 wait   = false; /* bar.sync (else bar.arrive) */
    bool                 inc    = false; /* setmaxnreg.inc */
    std::vector<operand> ops;
};

[[noreturn]] void bad(const std::string & what, const char * file, int line) {
    fault("inline PTX at %s:%d not emulated: %s", file, line, what.c_str());
}

std::vector<instr> parse(const char * tmpl, const char * file, int line) {
    std::vector<instr> out;
    std::string        all(tmpl);
    size_t             pos = 0;
    std::vector<std::string> preds; /* predicate registers declared in the template (one scope: names are unique) */
    int                      depth = 0;
    while (pos < all.size()) {
        size_t end = all.find(';', pos);
        if (end == std::string::npos) end = all.size();
        std::string s = all.substr(pos, end - pos);
        pos           = end + 1;
        /* scope braces at the start of a statement: '{' opens a block, '}' closes one (register lists only follow
         * an opcode, so they are never at the start) */
        for (;;) {
            const size_t a = s.find_first_not_of(" \t\n");
            if (a == std::string::npos) {
                s.clear();
                break;
            }
            if (s[a] == '{' || s[a] == '}') {
                depth += s[a] == '{' ? 1 : -1;
                if (depth < 0) bad("unbalanced '}'", file, line);
                s = s.substr(a + 1);
                continue;
            }
            const size_t b = s.find_last_not_of(" \t\n");
            s              = s.substr(a, b - a + 1);
            break;
        }
        if (s.empty()) continue;
        if (s.rfind(".reg", 0) == 0) { /* .reg .pred p{, q}; other register declarations are not emulated */
            size_t q = 4;
            while (q < s.size() && (s[q] == ' ' || s[q] == '\t' || s[q] == '\n')) q++;
            if (s.compare(q, 5, ".pred") != 0) bad(s + " (only .pred registers)", file, line);
            std::string names = s.substr(q + 5);
            size_t      i     = 0;
            while (i < names.size()) {
                while (i < names.size() && (names[i] == ' ' || names[i] == ',' || names[i] == '\t' || names[i] == '\n')) i++;
                size_t j = i;
                while (j < names.size() && (isalnum((unsigned char) names[j]) || names[j] == '_' || names[j] == '$')) j++;
                if (j == i) {
                    if (i < names.size()) bad(s, file, line);
                    break;
                }
                preds.push_back(names.substr(i, j - i));
                if ((int) preds.size() > MAX_PREDS) bad(s + " (too many predicates)", file, line);
                i = j;
            }
            continue;
        }
        instr in;
        in.text               = s;
        const size_t sp       = s.find_first_of(" \t");
        const std::string opc = s.substr(0, sp);
        const std::string rest = sp == std::string::npos ? "" : s.substr(sp + 1);
        auto has = [&](const char * t) { return opc.find(t) != std::string::npos; };
        if (opc.rfind("cp.async.commit_group", 0) == 0) {
            in.op = CP_COMMIT;
        } else if (opc.rfind("cp.async.wait_group", 0) == 0) {
            in.op = CP_WAIT;
        } else if (opc.rfind("cp.async.wait_all", 0) == 0) {
            in.op = CP_WAIT_ALL;
        } else if (opc.rfind("cp.async.ca.shared.global", 0) == 0 || opc.rfind("cp.async.cg.shared.global", 0) == 0) {
            in.op = CP_ASYNC;
        } else if (opc.rfind("ldmatrix.sync.aligned.m8n8.", 0) == 0 && has(".b16")) {
            in.op    = LDMATRIX;
            in.nmat  = has(".x4") ? 4 : has(".x2") ? 2 : has(".x1") ? 1 : 0;
            in.trans = has(".trans");
            if (!in.nmat) bad(s, file, line);
        } else if (opc.rfind("mma.sync.aligned.m16n8k", 0) == 0 && has(".row.col.f32.") && opc.size() > 4 &&
                   opc.compare(opc.size() - 4, 4, ".f32") == 0) {
            in.op   = MMA;
            in.k    = has("m16n8k16") ? 16 : has("m16n8k8.") ? 8 : 0;
            const bool b = has(".bf16.bf16."), h = has(".f16.f16.");
            if (!in.k || b == h) bad(s, file, line);
            in.bf16 = b;
        } else if (opc == "ex2.approx.ftz.f32" || opc == "ex2.approx.f32") {
            in.op  = EX2;
            in.ftz = has(".ftz");
        } else if (opc == "ld.shared.f32" || opc == "ld.shared.b32" || opc == "ld.shared.u32" || opc == "ld.shared.s32" ||
                   opc == "ld.shared::cta.f32" || opc == "ld.shared::cta.b32") {
            in.op = LD_SHARED;
        } else if (opc == "setp.ne.b32" || opc == "setp.ne.u32" || opc == "setp.ne.s32" || opc == "setp.eq.b32" ||
                   opc == "setp.eq.u32" || opc == "setp.eq.s32") {
            in.op = SETP;
            in.ne = has(".ne.");
        } else if (opc == "wgmma.fence.sync.aligned") {
            in.op = WG_FENCE;
        } else if (opc == "wgmma.commit_group.sync.aligned") {
            in.op = WG_COMMIT;
        } else if (opc == "wgmma.wait_group.sync.aligned") {
            in.op = WG_WAIT;
        } else if (opc == "fence.proxy.async" || opc == "fence.proxy.async.shared::cta") {
            in.op = FENCE_PROXY_ASYNC;
        } else if (opc == "mbarrier.init.shared::cta.b64" || opc == "mbarrier.init.shared.b64") {
            in.op = MB_INIT;
        } else if (opc == "mbarrier.arrive.shared::cta.b64" || opc == "mbarrier.arrive.shared.b64" ||
                   opc == "mbarrier.arrive.expect_tx.shared::cta.b64" || opc == "mbarrier.arrive.expect_tx.shared.b64") {
            in.op = MB_ARRIVE;
            in.tx = has(".expect_tx");
        } else if (opc == "mbarrier.try_wait.parity.shared::cta.b64" || opc == "mbarrier.try_wait.parity.shared.b64") {
            in.op = MB_TRY_WAIT;
        } else if (opc == "selp.b32" || opc == "selp.u32") {
            in.op = SELP;
        } else if (opc == "fence.mbarrier_init.release.cluster") {
            in.op = FENCE_MB_INIT;
        } else if (opc.rfind("cp.async.bulk.tensor.", 0) == 0 &&
                   opc.find(".shared::cluster.global.tile.mbarrier::complete_tx::bytes") != std::string::npos) {
            in.op = TMA_LOAD;
            in.n  = opc[strlen("cp.async.bulk.tensor.")] - '0';
            if (in.n < 1 || in.n > 5 || opc.compare(strlen("cp.async.bulk.tensor.") + 1, 2, "d.") != 0) bad(s, file, line);
        } else if (opc == "bar.sync" || opc == "bar.arrive" || opc == "barrier.sync" || opc == "barrier.arrive") {
            in.op   = BAR;
            in.wait = has(".sync");
        } else if (opc == "setmaxnreg.inc.sync.aligned.u32" || opc == "setmaxnreg.dec.sync.aligned.u32") {
            in.op  = SETMAXNREG;
            in.inc = has(".inc.");
        } else if (opc.rfind("wgmma.mma_async.sync.aligned.m64n", 0) == 0) {
            /* .m64nNk16.f32.{f16.f16,bf16.bf16}: the dense 16-bit forms with an f32 accumulator */
            const char * p = opc.c_str() + strlen("wgmma.mma_async.sync.aligned.m64n");
            char *       e;
            const long   n = strtol(p, &e, 10);
            const std::string tail(e);
            if (n < 8 || n > 256 || n % 8 || (tail != "k16.f32.bf16.bf16" && tail != "k16.f32.f16.f16")) {
                bad(s, file, line);
            }
            in.op   = WG_MMA;
            in.n    = (int) n;
            in.bf16 = tail == "k16.f32.bf16.bf16";
        } else {
            bad(s, file, line);
        }
        /* operands: %n, {%a, %b, ...}, [%n], immediates */
        size_t i = 0;
        while (i < rest.size()) {
            while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\t' || rest[i] == ',' || rest[i] == '\n')) i++;
            if (i >= rest.size()) break;
            operand o;
            char    close = 0;
            if (rest[i] == '{') {
                o.kind = operand::LIST;
                close  = '}';
            } else if (rest[i] == '[') {
                o.kind = operand::ADDR;
                close  = ']';
            }
            size_t j = i;
            if (close) {
                j = rest.find(close, i);
                if (j == std::string::npos) bad(s, file, line);
            } else {
                while (j < rest.size() && rest[j] != ',') j++;
            }
            std::string tok = rest.substr(close ? i + 1 : i, (close ? j : j) - (close ? i + 1 : i));
            if (!close) {
                const size_t ta = tok.find_first_not_of(" \t\n"), tb = tok.find_last_not_of(" \t\n");
                tok = ta == std::string::npos ? "" : tok.substr(ta, tb - ta + 1);
                if (tok.find('%') != std::string::npos) {
                    o.kind = operand::REG;
                } else if (tok == "_") {
                    o.kind = operand::SINK;
                } else if (!tok.empty() && (isalpha((unsigned char) tok[0]) || tok[0] == '_' || tok[0] == '$')) {
                    size_t q = 0;
                    while (q < preds.size() && preds[q] != tok) q++;
                    if (q == preds.size()) bad(s + " (unknown name '" + tok + "')", file, line);
                    o.kind = operand::PRED;
                    o.idx.push_back((int) q);
                } else {
                    char * e;
                    o.kind = operand::IMM;
                    o.imm  = strtoll(tok.c_str(), &e, 0);
                    if (tok.empty() || *e) bad(s + " (operand '" + tok + "')", file, line);
                }
            }
            for (size_t q = 0; q < tok.size() && o.kind != operand::PRED && o.kind != operand::SINK; q++) {
                if (tok[q] == '%') o.idx.push_back(atoi(tok.c_str() + q + 1));
                else if (tok[q] == '+') bad(s + " (address offsets)", file, line);
            }
            if (o.kind != operand::IMM && o.kind != operand::SINK && o.idx.empty()) bad(s, file, line);
            in.ops.push_back(o);
            i = close ? j + 1 : j;
        }
        out.push_back(in);
    }
    if (depth != 0) bad("unbalanced '{'", file, line);
    return out;
}

struct ctx {
    asm_arg *    args;
    int          n;
    const char * file;
    int          line;
    bool *       preds; /* the block's predicate registers */
    uint64_t get(int i) const {
        if (i < 0 || i >= n) fault("inline PTX at %s:%d: operand %%%d of %d", file, line, i, n);
        const asm_arg & a = args[i];
        if (!a.out) return a.val;
        uint64_t v = 0;
        memcpy(&v, a.ptr, (size_t) a.val); /* an in-out operand: its current value */
        return v;
    }
    void put(int i, uint64_t v) const {
        if (i < 0 || i >= n || !args[i].out) fault("inline PTX at %s:%d: operand %%%d is not an output", file, line, i);
        memcpy(args[i].ptr, &v, (size_t) args[i].val);
    }
    float getf(int i) const {
        const uint32_t u = (uint32_t) get(i);
        float          f;
        memcpy(&f, &u, 4);
        return f;
    }
    void putf(int i, float f) const {
        uint32_t u;
        memcpy(&u, &f, 4);
        put(i, u);
    }
    uint64_t value(const operand & o) const { return o.kind == operand::IMM ? (uint64_t) o.imm : get(o.idx[0]); }
    /* An immediate: a literal in the template or an "n" operand */
    long long imm(const operand & o, const instr & in) const {
        if (o.kind == operand::IMM) return o.imm;
        if (o.kind != operand::REG || o.idx[0] < 0 || o.idx[0] >= n || args[o.idx[0]].kind != 'n') {
            fault("inline PTX at %s:%d: '%s': an operand that must be an immediate is not", file, line, in.text.c_str());
        }
        return (long long) get(o.idx[0]);
    }
    bool pred(const operand & o, const instr & in) const {
        if (o.kind == operand::PRED) return preds[o.idx[0]];
        if (o.kind == operand::IMM) return o.imm != 0;
        fault("inline PTX at %s:%d: '%s': a predicate operand is neither a predicate nor a constant", file, line,
              in.text.c_str());
    }
};

void need_cc(int cc, const instr & in, const ctx & c) {
    if (cfg().cc < cc) {
        fault("illegal instruction on sm_%d: '%s' (at %s:%d) needs sm_%d", cfg().cc, in.text.c_str(), c.file, c.line, cc);
    }
}

float h16(bool bf16, uint32_t w, int hi) {
    const uint16_t h = (uint16_t) (hi ? w >> 16 : w & 0xffffu);
    return bf16 ? rk_bf16_to_f32(h) : rk_f16_to_f32(h);
}

/* A PTX read of shared bytes [addr, addr + n): inside the bytes in use, and no cp.async still landing there. */
void shared_range(uint64_t addr, size_t n, const instr & in, const ctx & c) {
    if (addr + n > smem_in_use()) {
        fault("'%s' at %s:%d: shared bytes [%llu, %llu) outside the %zu in use", in.text.c_str(), c.file, c.line,
              (unsigned long long) addr, (unsigned long long) (addr + n), smem_in_use());
    }
    if (const char * why = cp_pending_at((uint32_t) addr, (int) n)) {
        fault("'%s' at %s:%d: reads shared bytes [%llu, %llu) that %s: the copy may land before or after the read",
              in.text.c_str(), c.file, c.line, (unsigned long long) addr, (unsigned long long) (addr + n), why);
    }
}

/* ---- wgmma ---------------------------------------------------------------------------------------------------- */

/* The warpgroup's wgmma state, per block: fenced since the kernel began (wgmma.fence must precede the first
 * mma_async) and the committed groups (book-keeping only: the math is done at issue). */
struct wg_state {
    uint64_t block; /* block_serial() of the block it belongs to */
    bool     fenced;
};
wg_state wgs[8];

wg_state & my_wg() {
    wg_state & s = wgs[thread_linear() / 128];
    if (s.block != block_serial()) s = wg_state{ block_serial(), false };
    return s;
}

/* ---- the asynchrony model (header): per thread, the mma_async ops in flight and what they read and produce ---- */

constexpr uint32_t WG_POISON = 0x7fbadbadu;

struct wg_op {
    int64_t      group = -1; /* the commit serial of its group; -1 while uncommitted */
    uint64_t     serial;     /* issue order within the thread */
    const char * file;
    int          line;
    std::vector<std::pair<float *, uint32_t>>  acc;   /* accumulator variable, the bits D gives it */
    std::vector<std::pair<uint32_t, uint16_t>> reads; /* shared byte address, the 16 bits read there at issue */
};

struct wg_retired {
    uint32_t     bits;   /* what the retire wrote */
    int64_t      fences; /* the thread's wgmma.fence count then */
    const char * file;   /* the mma_async that produced it */
    int          line;
};

struct wg_thread {
    uint64_t           block   = 0;
    int64_t            commits = 0, fences = 0;
    uint64_t           issued  = 0;
    std::vector<wg_op> pending;
    std::unordered_map<float *, uint64_t>   inflight; /* accumulator -> serial of the newest op producing it */
    std::unordered_map<float *, wg_retired> retired;
};
std::vector<wg_thread> wgt(1024);

wg_thread & my_wgt() {
    wg_thread & t = wgt[(size_t) thread_linear()];
    if (t.block != block_serial()) {
        t.block   = block_serial();
        t.commits = t.fences = 0;
        t.issued  = 0;
        t.pending.clear();
        t.inflight.clear();
        t.retired.clear();
    }
    return t;
}

/* Per shared byte of the running block: how many reads of in-flight mma_async ops (all threads) cover it. */
std::vector<uint16_t> wg_reading;
uint64_t              wg_reading_block = 0;

std::vector<uint16_t> & reading() {
    if (wg_reading_block != block_serial()) {
        wg_reading_block = block_serial();
        wg_reading.assign(smem_in_use() + 2, 0);
    }
    return wg_reading;
}

/* A shared-memory operand of wgmma.mma_async, decoded from its descriptor (PTX ISA 9.7.15.5.1.2.2). */
struct smem_operand {
    uint32_t start, lbo, sbo; /* bytes */
    int      swz;             /* swizzle width in bytes: 128, 64, 32, or 0 (none) */
    bool     mn_major;        /* transposed: M-major A / N-major B */
    const char * name;
};

smem_operand decode_desc(uint64_t d, bool mn_major, const char * name, const instr & in, const ctx & c) {
    smem_operand o;
    o.start    = (uint32_t) (d & 0x3FFF) << 4;
    o.lbo      = (uint32_t) ((d >> 16) & 0x3FFF) << 4;
    o.sbo      = (uint32_t) ((d >> 32) & 0x3FFF) << 4;
    o.mn_major = mn_major;
    o.name     = name;
    const int mode = (int) (d >> 62);
    o.swz          = mode == 1 ? 128 : mode == 2 ? 64 : mode == 3 ? 32 : 0;
    const int base = (int) ((d >> 49) & 7);
    if (base) {
        fault("'%s' at %s:%d: descriptor of %s 0x%016llx has base offset %d (swizzle patterns that do not start on "
              "their boundary are not emulated)", in.text.c_str(), c.file, c.line, name, (unsigned long long) d, base);
    }
    return o;
}

/* Byte address in the arena of element (mn, k) of a 16-bit shared-memory operand (the canonical layouts of PTX ISA
 * 9.7.15.5.1.2.1.3 with T = 8 elements per 16 bytes), swizzle applied. */
uint32_t elem_addr(const smem_operand & o, int mn, int k, const instr & in, const ctx & c) {
    uint32_t off, row_off; /* row_off: the offset inside the W-byte row of a swizzled layout */
    if (!o.swz) {
        off     = o.mn_major ? 2 * (mn % 8) + (mn / 8) * o.sbo + (k % 8) * 16 + (k / 8) * o.lbo
                             : (mn % 8) * 16 + (mn / 8) * o.sbo + 2 * (k % 8) + (k / 8) * o.lbo;
        row_off = 0;
    } else if (!o.mn_major) {
        row_off = 2 * k;
        off     = (mn % 8) * o.swz + (mn / 8) * o.sbo + row_off;
    } else {
        const int wn = o.swz / 2; /* elements per row */
        row_off      = 2 * (mn % wn);
        off          = row_off + (mn / wn) * o.lbo + (k % 8) * o.swz + (k / 8) * o.sbo;
    }
    if (o.swz && o.start % o.swz + row_off >= (uint32_t) o.swz) {
        fault("'%s' at %s:%d: %s (%s-major, %d-byte swizzle, start address %u): element (%d, %d) lies past the end of "
              "its %d-byte swizzle row", in.text.c_str(), c.file, c.line, o.name, o.mn_major ? "MN" : "K", o.swz,
              o.start, mn, k, o.swz);
    }
    uint32_t a = o.start + off;
    if (o.swz == 128) a ^= ((a >> 7) & 7) << 4;
    if (o.swz == 64) a ^= ((a >> 7) & 3) << 4;
    if (o.swz == 32) a ^= ((a >> 7) & 1) << 4;
    return a;
}

float smem_elem(const smem_operand & o, bool bf16, int mn, int k, const instr & in, const ctx & c, wg_op & op) {
    const uint32_t a = elem_addr(o, mn, k, in, c);
    if ((uint64_t) a + 2 > smem_in_use()) {
        fault("'%s' at %s:%d: %s element (%d, %d) at shared bytes [%u, %u), outside the %zu in use (start %u, LBO %u, "
              "SBO %u)", in.text.c_str(), c.file, c.line, o.name, mn, k, a, a + 2, smem_in_use(), o.start, o.lbo, o.sbo);
    }
    if (const char * why = cp_pending_at(a, 2)) {
        fault("'%s' at %s:%d: %s element (%d, %d) at shared byte %u is the target of %s: the copy may land before or "
              "after the read", in.text.c_str(), c.file, c.line, o.name, mn, k, a, why);
    }
    const unsigned char * sm = smem_arena();
    if (memcmp(sm + a, smem_async_view() + a, 2) != 0) {
        fault("'%s' at %s:%d: %s element (%d, %d) at shared byte %u was written through the generic proxy (a store or "
              "a cp.async) after the last fence.proxy.async: the async proxy may not see it", in.text.c_str(), c.file,
              c.line, o.name, mn, k, a);
    }
    uint16_t h;
    memcpy(&h, sm + a, 2);
    op.reads.emplace_back(a, h);
    std::vector<uint16_t> & rd = reading();
    rd[a]++;
    rd[a + 1]++;
    return bf16 ? rk_bf16_to_f32(h) : rk_f16_to_f32(h);
}

void wg_mma(const instr & in, const ctx & c) {
    need_cc(90, in, c);
    /* {d}, a, b-desc, scale-d, imm-scale-a, imm-scale-b{, imm-trans-a}, imm-trans-b */
    const bool a_regs = in.ops.size() >= 2 && in.ops[1].kind == operand::LIST;
    if (in.ops.size() != (a_regs ? 7u : 8u) || in.ops[0].kind != operand::LIST || (int) in.ops[0].idx.size() != in.n / 2 ||
        (a_regs && in.ops[1].idx.size() != 4) || (!a_regs && in.ops[1].kind != operand::REG) ||
        in.ops[2].kind != operand::REG) {
        bad(in.text + " (operands)", c.file, c.line);
    }
    const bool      scale_d = c.pred(in.ops[3], in);
    const long long sa = c.imm(in.ops[4], in), sb = c.imm(in.ops[5], in);
    const long long ta = a_regs ? 0 : c.imm(in.ops[6], in), tb = c.imm(in.ops[a_regs ? 6 : 7], in);
    if ((sa != 1 && sa != -1) || (sb != 1 && sb != -1) || (ta != 0 && ta != 1) || (tb != 0 && tb != 1)) {
        fault("'%s' at %s:%d: imm-scale-a %lld, imm-scale-b %lld (1 or -1), imm-trans-a %lld, imm-trans-b %lld (0 or 1)",
              in.text.c_str(), c.file, c.line, sa, sb, ta, tb);
    }
    for (int i = 0; i < 3; i++) {
        const operand & o = in.ops[(size_t) i];
        for (int r : o.idx) {
            const char k = r >= 0 && r < c.n ? c.args[r].kind : '?';
            if ((i == 0 && k != 'f') || (i == 1 && a_regs && k != 'r') || (i > 0 && !(i == 1 && a_regs) && k != 'l')) {
                fault("'%s' at %s:%d: operand %%%d has constraint '%c' (D \"+f\", A registers \"r\", descriptors \"l\")",
                      in.text.c_str(), c.file, c.line, r, k);
            }
        }
        if (i == 0) {
            for (int r : o.idx) {
                if (!c.args[r].out) fault("'%s' at %s:%d: accumulator %%%d is not an in-out operand", in.text.c_str(), c.file, c.line, r);
            }
        }
    }
    if (!my_wg().fenced) {
        fault("'%s' at %s:%d: no wgmma.fence before the warpgroup's first wgmma.mma_async", in.text.c_str(), c.file, c.line);
    }
    /* published: A registers (or A's descriptor), B's descriptor, the immediates and scale-d */
    uint64_t w[7] = { 0, 0, 0, 0, 0, 0, 0 };
    if (a_regs) {
        for (int i = 0; i < 4; i++) w[i] = (uint32_t) c.get(in.ops[1].idx[(size_t) i]);
    } else {
        w[4] = c.get(in.ops[1].idx[0]);
    }
    w[5] = c.get(in.ops[2].idx[0]);
    w[6] = (uint64_t) scale_d | (uint64_t) (sa < 0) << 1 | (uint64_t) (sb < 0) << 2 | (uint64_t) ta << 3 |
           (uint64_t) tb << 4;
    const uint64_t * t = warpgroup_gather(w, 7, "wgmma.mma_async", c.file, c.line);
    for (int s = 1; s < 128; s++) {
        if (t[s * 8 + 4] != t[4] || t[s * 8 + 5] != t[5] || t[s * 8 + 6] != t[6]) {
            fault("'%s' at %s:%d: the threads of the warpgroup disagree: thread 0 has A-desc 0x%016llx B-desc 0x%016llx "
                  "flags 0x%llx, thread %d 0x%016llx 0x%016llx 0x%llx (flags: 1 scale-d, 2/4 negate A/B, 8/16 trans A/B)",
                  in.text.c_str(), c.file, c.line, (unsigned long long) t[4], (unsigned long long) t[5],
                  (unsigned long long) t[6], s, (unsigned long long) t[s * 8 + 4], (unsigned long long) t[s * 8 + 5],
                  (unsigned long long) t[s * 8 + 6]);
        }
    }
    const smem_operand da = a_regs ? smem_operand{} : decode_desc(t[4], ta, "A", in, c);
    const smem_operand db = decode_desc(t[5], tb, "B", in, c);
    const int          T = thread_linear() % 128, wq = T / 32, g = (T % 32) / 4, tq = T % 4;
    wg_thread &        th = my_wgt();
    wg_op              op;
    op.serial = th.issued++;
    op.file   = c.file;
    op.line   = c.line;
    /* this thread's two rows of A, its N/4 columns of B */
    float av[2][16];
    for (int h = 0; h < 2; h++) {
        const int row = 16 * wq + g + 8 * h;
        for (int k = 0; k < 16; k++) {
            float v;
            if (a_regs) {
                /* register r of thread 32 (row / 16) + 4 (row % 8) + (k % 8) / 2 holds (row, k) when r % 2 == (row % 16) / 8
                 * and r / 2 == k / 8; half k % 2 */
                const int src = 32 * (row / 16) + 4 * (row % 8) + (k % 8) / 2, r = ((row % 16) / 8) + 2 * (k / 8);
                v             = h16(in.bf16, (uint32_t) t[src * 8 + r], k % 2);
            } else {
                v = smem_elem(da, in.bf16, row, k, in, c, op);
            }
            av[h][k] = sa < 0 ? -v : v;
        }
    }
    std::vector<float> bv((size_t) in.n / 4 * 16);
    for (int j = 0; j < in.n / 4; j++) {
        const int col = 8 * (j / 2) + 2 * tq + (j % 2);
        for (int k = 0; k < 16; k++) {
            const float v        = smem_elem(db, in.bf16, col, k, in, c, op);
            bv[(size_t) (j * 16 + k)] = sb < 0 ? -v : v;
        }
    }
    for (int i = 0; i < in.n / 2; i++) {
        /* d[i]: row 16 w + g + 8 ((i / 2) % 2), column 8 (i / 4) + 2 t + (i % 2) */
        const int h = (i / 2) % 2, j = 2 * (i / 4) + (i % 2);
        const int r   = in.ops[0].idx[(size_t) i];
        float *   ptr = (float *) c.args[r].ptr;
        uint32_t  cur;
        memcpy(&cur, ptr, 4);
        float     d0;
        const auto fl = th.inflight.find(ptr);
        if (fl != th.inflight.end()) {
            /* chained on an op in flight (implicitly ordered): its result, which the variable does not hold yet */
            const wg_op * prev = nullptr;
            for (const wg_op & q : th.pending) {
                if (q.serial == fl->second) prev = &q;
            }
            uint32_t bits = 0;
            for (const auto & pa : prev->acc) {
                if (pa.first == ptr) bits = pa.second;
            }
            if (cur != WG_POISON) {
                fault("'%s' at %s:%d: accumulator %%%d was written while the wgmma.mma_async at %s:%d that produces it "
                      "was in flight (no wgmma.wait_group retired it)", in.text.c_str(), c.file, c.line, r, prev->file,
                      prev->line);
            }
            memcpy(&d0, &bits, 4);
        } else {
            const auto rt = th.retired.find(ptr);
            if (rt != th.retired.end() && rt->second.bits != cur && rt->second.fences == th.fences) {
                fault("'%s' at %s:%d: accumulator %%%d was changed after the wgmma.wait_group that retired the "
                      "wgmma.mma_async at %s:%d, and no wgmma.fence of this thread follows the change",
                      in.text.c_str(), c.file, c.line, r, rt->second.file, rt->second.line);
            }
            memcpy(&d0, &cur, 4);
        }
        float s = scale_d ? d0 : 0.0f;
        for (int k = 0; k < 16; k++) s = fmaf(av[h][k], bv[(size_t) (j * 16 + k)], s);
        uint32_t bits;
        memcpy(&bits, &s, 4);
        op.acc.emplace_back(ptr, bits);
    }
    /* D reaches the variables at the retire; until then they hold the poison */
    for (const auto & pa : op.acc) {
        th.inflight[pa.first] = op.serial;
        memcpy(pa.first, &WG_POISON, 4);
    }
    th.pending.push_back(std::move(op));
}

/* wgmma.wait_group n of this thread: retire every committed op but those of the n newest groups. */
void wg_retire(int64_t n, const char * file, int line) {
    wg_thread &             th = my_wgt();
    std::vector<uint16_t> & rd = reading();
    const unsigned char *   sm = smem_arena();
    std::vector<wg_op>      keep;
    for (wg_op & op : th.pending) {
        if (op.group < 0 || op.group >= th.commits - n) {
            keep.push_back(std::move(op));
            continue;
        }
        for (const auto & r : op.reads) {
            rd[r.first]--;
            rd[r.first + 1]--;
            if (memcmp(sm + r.first, &r.second, 2) != 0) {
                fault("shared bytes [%u, %u) read by the wgmma.mma_async at %s:%d changed before the "
                      "wgmma.wait_group at %s:%d retired it", r.first, r.first + 2, op.file, op.line, file, line);
            }
        }
        for (const auto & pa : op.acc) {
            const auto fl = th.inflight.find(pa.first);
            if (fl == th.inflight.end() || fl->second != op.serial) continue; /* a newer op in flight produces it */
            uint32_t cur;
            memcpy(&cur, pa.first, 4);
            if (cur != WG_POISON) {
                fault("an accumulator of the wgmma.mma_async at %s:%d was written while it was in flight (found by "
                      "the wgmma.wait_group at %s:%d that retires it)", op.file, op.line, file, line);
            }
            memcpy(pa.first, &pa.second, 4);
            th.inflight.erase(fl);
            th.retired[pa.first] = wg_retired{ pa.second, th.fences, op.file, op.line };
        }
    }
    th.pending.swap(keep);
}
} // namespace

/* cp.async into shared bytes: an error while an mma_async of the block (any thread) still reads them. */
void wg_check_shared_write(uint32_t dst, int bytes, const char * what) {
    if (wg_reading_block != block_serial()) return;
    for (int i = 0; i < bytes; i++) {
        if ((size_t) dst + (size_t) i < wg_reading.size() && wg_reading[(size_t) dst + (size_t) i]) {
            for (const wg_thread & t : wgt) {
                if (t.block != block_serial()) continue;
                for (const wg_op & op : t.pending) {
                    for (const auto & r : op.reads) {
                        if (r.first + 2 > dst + (uint32_t) i && r.first <= dst + (uint32_t) i) {
                            fault("%s into shared bytes [%u, %u) that the wgmma.mma_async at %s:%d (in flight, "
                                  "not yet retired by a wgmma.wait_group) reads", what, dst, dst + (uint32_t) bytes,
                                  op.file, op.line);
                        }
                    }
                }
            }
            fault("%s into shared bytes [%u, %u) that a wgmma.mma_async in flight reads", what, dst,
                  dst + (uint32_t) bytes);
        }
    }
}

/* A thread returns: an error with mma_async ops it never retired. */
void wg_thread_exit() {
    wg_thread & t = wgt[(size_t) thread_linear()];
    if (t.block == block_serial() && !t.pending.empty()) {
        fault("thread returns with %zu wgmma.mma_async ops never retired by a wgmma.wait_group (the first at %s:%d)",
              t.pending.size(), t.pending[0].file, t.pending[0].line);
    }
}

namespace {

void exec(const instr & in, const ctx & c) {
    switch (in.op) {
        case SETP: {
            if (in.ops.size() != 3 || in.ops[0].kind != operand::PRED) bad(in.text, c.file, c.line);
            const uint32_t a = (uint32_t) c.value(in.ops[1]), b = (uint32_t) c.value(in.ops[2]);
            c.preds[in.ops[0].idx[0]] = in.ne ? a != b : a == b;
            break;
        }
        case WG_FENCE: {
            need_cc(90, in, c);
            (void) warpgroup_gather(nullptr, 0, "wgmma.fence", c.file, c.line);
            my_wg().fenced = true;
            my_wgt().fences++;
            break;
        }
        case WG_COMMIT: {
            need_cc(90, in, c);
            (void) warpgroup_gather(nullptr, 0, "wgmma.commit_group", c.file, c.line);
            wg_thread & th = my_wgt();
            for (wg_op & op : th.pending) {
                if (op.group < 0) op.group = th.commits;
            }
            th.commits++;
            break;
        }
        case WG_WAIT: {
            need_cc(90, in, c);
            const long long n = c.imm(in.ops.at(0), in);
            if (n < 0 || n > 7) fault("'%s' at %s:%d: wait_group %lld (0..7)", in.text.c_str(), c.file, c.line, n);
            const uint64_t   v = (uint64_t) n;
            const uint64_t * t = warpgroup_gather(&v, 1, "wgmma.wait_group", c.file, c.line);
            for (int s = 0; s < 128; s++) {
                if (t[s * 8] != v) fault("'%s' at %s:%d: threads of the warpgroup wait with different N", in.text.c_str(), c.file, c.line);
            }
            wg_retire(n, c.file, c.line);
            break;
        }
        case FENCE_PROXY_ASYNC: need_cc(90, in, c); fence_proxy_async(); break;
        case FENCE_MB_INIT: need_cc(90, in, c); break; /* mbarrier inits are visible at once here */
        case MB_INIT: {
            need_cc(80, in, c);
            if (in.ops.size() != 2 || in.ops[0].kind != operand::ADDR) bad(in.text, c.file, c.line);
            mbar_init((uint32_t) c.value(in.ops[0]), (int) c.value(in.ops[1]));
            break;
        }
        case MB_ARRIVE: {
            need_cc(in.tx ? 90 : 80, in, c);
            if (in.ops.size() != (in.tx ? 3u : 2u) || in.ops[1].kind != operand::ADDR) bad(in.text, c.file, c.line);
            if (in.ops[0].kind == operand::REG) c.put(in.ops[0].idx[0], 0); /* the state token: opaque, unused here */
            mbar_arrive((uint32_t) c.value(in.ops[1]), in.tx ? (long long) c.value(in.ops[2]) : 0);
            break;
        }
        case MB_TRY_WAIT: {
            need_cc(90, in, c);
            if (in.ops.size() != 3 || in.ops[0].kind != operand::PRED || in.ops[1].kind != operand::ADDR) bad(in.text, c.file, c.line);
            mbar_wait_parity((uint32_t) c.value(in.ops[1]), (unsigned) c.value(in.ops[2]), c.file, c.line);
            c.preds[in.ops[0].idx[0]] = true; /* it returns once the phase has completed (emu_fiber.cpp) */
            break;
        }
        case SELP: {
            if (in.ops.size() != 4 || in.ops[0].kind != operand::REG) bad(in.text, c.file, c.line);
            c.put(in.ops[0].idx[0], c.pred(in.ops[3], in) ? (uint32_t) c.value(in.ops[1]) : (uint32_t) c.value(in.ops[2]));
            break;
        }
        case TMA_LOAD: {
            need_cc(90, in, c);
            if (in.ops.size() != 3 || in.ops[0].kind != operand::ADDR || in.ops[1].kind != operand::ADDR ||
                in.ops[2].kind != operand::ADDR || (int) in.ops[1].idx.size() != in.n + 1) {
                bad(in.text, c.file, c.line);
            }
            int32_t coords[5];
            for (int i = 0; i < in.n; i++) coords[i] = (int32_t) c.get(in.ops[1].idx[(size_t) i + 1]);
            tma_load((uint32_t) c.value(in.ops[0]), (const void *) (uintptr_t) c.get(in.ops[1].idx[0]), coords, in.n,
                     (uint32_t) c.value(in.ops[2]));
            break;
        }
        case BAR: {
            if (in.ops.size() != 2) bad(in.text + " (bar with an id and a thread count)", c.file, c.line);
            named_barrier((int) c.value(in.ops[0]), (int) c.value(in.ops[1]), in.wait, c.file, c.line);
            break;
        }
        case SETMAXNREG: {
            need_cc(90, in, c);
            const long long n = c.imm(in.ops.at(0), in);
            if (n < 24 || n > 256 || n % 8) fault("'%s' at %s:%d: %lld registers (24 .. 256, a multiple of 8)", in.text.c_str(), c.file, c.line, n);
            const uint64_t   v = (uint64_t) n | (in.inc ? 1ull << 32 : 0);
            const uint64_t * t = warpgroup_gather(&v, 1, "setmaxnreg", c.file, c.line);
            for (int s = 0; s < 128; s++) {
                if (t[s * 8] != v) fault("'%s' at %s:%d: threads of the warpgroup ask for different counts", in.text.c_str(), c.file, c.line);
            }
            break;
        }
        case WG_MMA: wg_mma(in, c); break;
        case CP_COMMIT: need_cc(80, in, c); cp_commit(); break;
        case CP_WAIT: need_cc(80, in, c); cp_wait((int) c.value(in.ops.at(0))); break;
        case CP_WAIT_ALL: /* PTX ISA: cp.async.commit_group; cp.async.wait_group 0 */
            need_cc(80, in, c);
            cp_commit();
            cp_wait(0);
            break;
        case CP_ASYNC: {
            need_cc(80, in, c);
            if (in.ops.size() < 3) bad(in.text, c.file, c.line);
            const uint32_t dst  = (uint32_t) c.value(in.ops[0]);
            const void *   src  = (const void *) (uintptr_t) c.value(in.ops[1]);
            const int      size = (int) c.value(in.ops[2]);
            const int      srcb = in.ops.size() > 3 ? (int) c.value(in.ops[3]) : size;
            if ((size != 4 && size != 8 && size != 16) || (in.text.find(".cg.") != std::string::npos && size != 16)) {
                bad(in.text + " (copy size)", c.file, c.line);
            }
            if (srcb < 0 || srcb > size) fault("'%s' at %s:%d: src-size %d", in.text.c_str(), c.file, c.line, srcb);
            if (dst % (uint32_t) size || (srcb > 0 && (uintptr_t) src % (uintptr_t) size)) {
                fault("'%s' at %s:%d: misaligned (shared %u, global %p)", in.text.c_str(), c.file, c.line, dst, src);
            }
            cp_async(dst, src, size, srcb);
            break;
        }
        case LDMATRIX: {
            need_cc(75, in, c);
            const operand & regs = in.ops.at(0);
            if ((int) regs.idx.size() != in.nmat) bad(in.text, c.file, c.line);
            const uint64_t   addr = c.value(in.ops.at(1));
            const uint64_t * t    = warp_gather(0xffffffffu, &addr, 1, "ldmatrix", c.file, c.line);
            const int        l    = lane();
            unsigned char *  sm   = smem_arena();
            for (int m = 0; m < in.nmat; m++) {
                uint32_t r;
                if (!in.trans) {
                    const uint64_t ra = t[(8 * m + l / 4) * 8];
                    if (ra % 16) fault("ldmatrix at %s:%d: row address %llu not 16-byte aligned", c.file, c.line, (unsigned long long) ra);
                    shared_range(ra, 16, in, c);
                    memcpy(&r, sm + ra + 4 * (l % 4), 4);
                } else {
                    const uint64_t a0 = t[(8 * m + 2 * (l % 4)) * 8], a1 = t[(8 * m + 2 * (l % 4) + 1) * 8];
                    if (a0 % 16 || a1 % 16) fault("ldmatrix at %s:%d: row address not 16-byte aligned", c.file, c.line);
                    shared_range(a0, 16, in, c);
                    shared_range(a1, 16, in, c);
                    uint16_t lo, hi;
                    memcpy(&lo, sm + a0 + 2 * (l / 4), 2);
                    memcpy(&hi, sm + a1 + 2 * (l / 4), 2);
                    r = (uint32_t) lo | ((uint32_t) hi << 16);
                }
                c.put(regs.idx[(size_t) m], r);
            }
            break;
        }
        case MMA: {
            need_cc(in.k == 16 || in.bf16 ? 80 : 75, in, c);
            const int na = in.k == 16 ? 4 : 2, nb = in.k == 16 ? 2 : 1;
            if (in.ops.size() != 4 || in.ops[0].idx.size() != 4 || (int) in.ops[1].idx.size() != na ||
                (int) in.ops[2].idx.size() != nb || in.ops[3].idx.size() != 4) {
                bad(in.text, c.file, c.line);
            }
            uint64_t w[6];
            for (int i = 0; i < na; i++) w[i] = (uint32_t) c.get(in.ops[1].idx[(size_t) i]);
            for (int i = 0; i < nb; i++) w[4 + i] = (uint32_t) c.get(in.ops[2].idx[(size_t) i]);
            float acc[4];
            for (int e = 0; e < 4; e++) acc[e] = c.getf(in.ops[3].idx[(size_t) e]);
            const uint64_t * t = warp_gather(0xffffffffu, w, 6, "mma.sync", c.file, c.line);
            const int        l = lane(), g = l / 4, tq = l % 4;
            for (int e = 0; e < 4; e++) {
                const int row = g + 8 * (e / 2), col = 2 * tq + (e % 2);
                float     s   = acc[e];
                for (int k = 0; k < in.k; k++) {
                    /* A (16 x k, row-major fragments): lane (row % 8) * 4 + (k % 8) / 2, register (row >= 8) + 2 (k >= 8);
                     * B (k x 8, column fragments): lane col * 4 + (k % 8) / 2, register k >= 8; half k % 2 */
                    const float av = h16(in.bf16, (uint32_t) t[((row % 8) * 4 + (k % 8) / 2) * 8 + (row >= 8) + 2 * (k >= 8)], k % 2);
                    const float bv = h16(in.bf16, (uint32_t) t[(col * 4 + (k % 8) / 2) * 8 + 4 + (k >= 8)], k % 2);
                    s = fmaf(av, bv, s);
                }
                c.putf(in.ops[0].idx[(size_t) e], s);
            }
            break;
        }
        case EX2: {
            float x = c.getf(in.ops.at(1).idx.at(0));
            if (in.ftz && std::fpclassify(x) == FP_SUBNORMAL) x = copysignf(0.0f, x);
            float y = exp2f(x);
            if (in.ftz && std::fpclassify(y) == FP_SUBNORMAL) y = copysignf(0.0f, y);
            c.putf(in.ops[0].idx.at(0), y);
            break;
        }
        case LD_SHARED: {
            const uint64_t addr = c.value(in.ops.at(1));
            if (addr % 4) fault("'%s' at %s:%d: misaligned shared address %llu", in.text.c_str(), c.file, c.line, (unsigned long long) addr);
            shared_range(addr, 4, in, c);
            uint32_t v;
            memcpy(&v, smem_arena() + addr, 4);
            c.put(in.ops[0].idx.at(0), v);
            break;
        }
    }
}

} // namespace

void run_asm(const char * tmpl, asm_arg * args, int n, const char * file, int line) {
    static std::unordered_map<const char *, std::vector<instr>> cache;
    auto it = cache.find(tmpl);
    if (it == cache.end()) it = cache.emplace(tmpl, parse(tmpl, file, line)).first;
    bool      preds[MAX_PREDS] = {};
    const ctx c = { args, n, file, line, preds };
    for (const instr & in : it->second) exec(in, c);
}

} // namespace emu
