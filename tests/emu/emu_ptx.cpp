/*
 * emu_ptx.cpp: the inline PTX of rk's kernels, interpreted (tests/emu/README.md). cu2cpp.py turns each asm statement
 * into emu::run_asm(template, operands); the template is parsed once and cached. Instructions:
 *   cp.async.{ca,cg}.shared.global [dst], [src], size{, src_size};  cp.async.commit_group;  cp.async.wait_group N;
 *   cp.async.wait_all                                                  (sm_80+; queued per thread, see emu_fiber.cpp)
 *   ldmatrix.sync.aligned.m8n8.{x1,x2,x4}{.trans}.shared{::cta}.b16    (sm_75+; a warp collective)
 *   mma.sync.aligned.{m16n8k16,m16n8k8}.row.col.f32.{f16,bf16}.{f16,bf16}.f32   (a warp collective; k16 and bf16
 *                                                                        need sm_80, f16 k8 sm_75)
 *   ex2.approx{.ftz}.f32;  ld.shared{::cta}.{f32,b32,u32,s32}
 * Fragment layouts follow the PTX ISA's figures for mma.m16n8k16 / m16n8k8 and ldmatrix. Products of 16-bit inputs
 * are exact in fp32; the emulation adds them to the accumulator one k at a time with fmaf (real tensor cores add in
 * an unspecified order and internal precision).
 */
#include "emu_internal.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace emu {
namespace {

struct operand {
    enum { REG, LIST, ADDR, IMM } kind;
    std::vector<int> idx; /* operand numbers (%n) */
    long long        imm;
};

enum op_kind { CP_ASYNC, CP_COMMIT, CP_WAIT, CP_WAIT_ALL, LDMATRIX, MMA, EX2, LD_SHARED };

struct instr {
    op_kind              op;
    std::string          text;
    int                  size   = 0;     /* cp.async bytes */
    int                  nmat   = 0;     /* ldmatrix matrices */
    bool                 trans  = false; /* ldmatrix .trans */
    int                  k      = 0;     /* mma k */
    bool                 bf16   = false; /* mma inputs */
    bool                 ftz    = false;
    std::vector<operand> ops;
};

[[noreturn]] void bad(const std::string & what, const char * file, int line) {
    fault("inline PTX at %s:%d not emulated: %s", file, line, what.c_str());
}

std::vector<instr> parse(const char * tmpl, const char * file, int line) {
    std::vector<instr> out;
    std::string        all(tmpl);
    size_t             pos = 0;
    while (pos < all.size()) {
        size_t end = all.find(';', pos);
        if (end == std::string::npos) end = all.size();
        std::string s = all.substr(pos, end - pos);
        pos           = end + 1;
        const size_t a = s.find_first_not_of(" \t\n"), b = s.find_last_not_of(" \t\n");
        if (a == std::string::npos) continue;
        s = s.substr(a, b - a + 1);
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
            const std::string tok = rest.substr(close ? i + 1 : i, (close ? j : j) - (close ? i + 1 : i));
            if (!close) {
                if (tok.find('%') != std::string::npos) {
                    o.kind = operand::REG;
                } else {
                    o.kind = operand::IMM;
                    o.imm  = strtoll(tok.c_str(), nullptr, 0);
                }
            }
            for (size_t q = 0; q < tok.size(); q++) {
                if (tok[q] == '%') o.idx.push_back(atoi(tok.c_str() + q + 1));
                else if (tok[q] == '+') bad(s + " (address offsets)", file, line);
            }
            if (o.kind != operand::IMM && o.idx.empty()) bad(s, file, line);
            in.ops.push_back(o);
            i = close ? j + 1 : j;
        }
        out.push_back(in);
    }
    return out;
}

struct ctx {
    asm_arg *    args;
    int          n;
    const char * file;
    int          line;
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

void shared_range(uint64_t addr, size_t n, const instr & in, const ctx & c) {
    if (addr + n > smem_in_use()) {
        fault("'%s' at %s:%d: shared bytes [%llu, %llu) outside the %zu in use", in.text.c_str(), c.file, c.line,
              (unsigned long long) addr, (unsigned long long) (addr + n), smem_in_use());
    }
}

void exec(const instr & in, const ctx & c) {
    switch (in.op) {
        case CP_COMMIT: need_cc(80, in, c); cp_commit(); break;
        case CP_WAIT: need_cc(80, in, c); cp_wait((int) c.value(in.ops.at(0))); break;
        case CP_WAIT_ALL: need_cc(80, in, c); cp_wait(0); break;
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
    const ctx c = { args, n, file, line };
    for (const instr & in : it->second) exec(in, c);
}

} // namespace emu
