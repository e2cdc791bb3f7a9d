/*
 * gguf_blocks_cpu.c: the ggml type traits table and the CPU reference dequantize-row functions for the GGUF
 * block types (see gguf_blocks.h).
 *
 * Each function copies one block at a time out of src with memcpy, so tensors inside a GGUF mapping may sit
 * at any alignment. The arithmetic mirrors ggml's dequantize_row_* term by term (same products, same order,
 * all in f32), which is what makes the results bit-identical to ggml and to gguf-py's numpy code.
 */
#include "quant/gguf_blocks.h"

#include "rk.h"

#include <string.h>

/* ------------------------------------------------------------------------------------------------
 * CPU reference */

static inline float half_to_f32(uint16_t h) { return rk_f16_to_f32(h); }

void rk_cpu_dequant_f32(const void * src, float * dst, int64_t n) {
    memcpy(dst, src, (size_t) n * sizeof(float));
}

void rk_cpu_dequant_f16(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = rk_f16_to_f32(h);
    }
}

void rk_cpu_dequant_bf16(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = rk_bf16_to_f32(h);
    }
}

/* x (32) = d * (q - 8), q the nibbles: low nibbles give elements 0..15, high nibbles 16..31. */
void rk_cpu_dequant_q4_0(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK4_0; b++) {
        struct rk_block_q4_0 x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d = half_to_f32(x.d);
        float *     y = dst + b * RK_QK4_0;
        for (int j = 0; j < RK_QK4_0 / 2; j++) {
            y[j]                = (float) ((x.qs[j] & 0x0F) - 8) * d;
            y[j + RK_QK4_0 / 2] = (float) ((x.qs[j] >> 4) - 8) * d;
        }
    }
}

/* x = d * q + m */
void rk_cpu_dequant_q4_1(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK4_1; b++) {
        struct rk_block_q4_1 x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d = half_to_f32(x.d);
        const float m = half_to_f32(x.m);
        float *     y = dst + b * RK_QK4_1;
        for (int j = 0; j < RK_QK4_1 / 2; j++) {
            y[j]                = (float) (x.qs[j] & 0x0F) * d + m;
            y[j + RK_QK4_1 / 2] = (float) (x.qs[j] >> 4) * d + m;
        }
    }
}

/* x = d * (q - 16), q = nibble | (bit j of qh) << 4 */
void rk_cpu_dequant_q5_0(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK5_0; b++) {
        struct rk_block_q5_0 x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float    d  = half_to_f32(x.d);
        const uint32_t qh = (uint32_t) x.qh[0] | (uint32_t) x.qh[1] << 8 | (uint32_t) x.qh[2] << 16 |
                            (uint32_t) x.qh[3] << 24;
        float * y = dst + b * RK_QK5_0;
        for (int j = 0; j < RK_QK5_0 / 2; j++) {
            const int h0 = (int) ((qh >> j) & 1u) << 4;
            const int h1 = (int) ((qh >> (j + 16)) & 1u) << 4;
            y[j]                = (float) (((x.qs[j] & 0x0F) | h0) - 16) * d;
            y[j + RK_QK5_0 / 2] = (float) (((x.qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* x = d * q + m, q as q5_0 without the offset */
void rk_cpu_dequant_q5_1(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK5_1; b++) {
        struct rk_block_q5_1 x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float    d  = half_to_f32(x.d);
        const float    m  = half_to_f32(x.m);
        const uint32_t qh = (uint32_t) x.qh[0] | (uint32_t) x.qh[1] << 8 | (uint32_t) x.qh[2] << 16 |
                            (uint32_t) x.qh[3] << 24;
        float * y = dst + b * RK_QK5_1;
        for (int j = 0; j < RK_QK5_1 / 2; j++) {
            const int h0 = (int) ((qh >> j) & 1u) << 4;
            const int h1 = (int) ((qh >> (j + 16)) & 1u) << 4;
            y[j]                = (float) ((x.qs[j] & 0x0F) | h0) * d + m;
            y[j + RK_QK5_1 / 2] = (float) ((x.qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* x = d * q, q signed bytes */
void rk_cpu_dequant_q8_0(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK8_0; b++) {
        struct rk_block_q8_0 x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d = half_to_f32(x.d);
        float *     y = dst + b * RK_QK8_0;
        for (int j = 0; j < RK_QK8_0; j++) y[j] = (float) x.qs[j] * d;
    }
}

/*
 * Super-block of 256 in two halves of 128; each half reads 32 bytes of qs four times (shifts 0, 2, 4, 6), and
 * each pass covers two sub-blocks of 16: x = (d * scale) * q - (dmin * min).
 */
void rk_cpu_dequant_q2_K(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK_K; b++) {
        struct rk_block_q2_K x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d    = half_to_f32(x.d);
        const float dmin = half_to_f32(x.dmin);
        float *     y    = dst + b * RK_QK_K;
        int         is   = 0;
        for (int half = 0; half < 2; half++) {
            const uint8_t * q = x.qs + 32 * half;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int sub = 0; sub < 2; sub++) {
                    const uint8_t sc = x.scales[is++];
                    const float   dl = d * (float) (sc & 0x0F);
                    const float   ml = dmin * (float) (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float) ((q[16 * sub + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/*
 * Scales: 16 six-bit values, low 4 bits in bytes 0..7 (low nibbles for 0..7, high nibbles for 8..15), high 2
 * bits in bytes 8..11 (byte 8 + i % 4, bit pair i / 4); the scale is value - 32. A quant is its 2 bits from qs
 * minus 4 when its hmask bit is clear. x = (d * scale) * q.
 */
void rk_cpu_dequant_q3_K(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK_K; b++) {
        struct rk_block_q3_K x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d = half_to_f32(x.d);
        int         scale[16];
        for (int i = 0; i < 16; i++) {
            const int lo = i < 8 ? (x.scales[i] & 0x0F) : (x.scales[i - 8] >> 4);
            const int hi = (x.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
            scale[i]     = (lo | hi << 4) - 32;
        }
        float * y = dst + b * RK_QK_K;
        for (int half = 0; half < 2; half++) {
            const uint8_t * q = x.qs + 32 * half;
            for (int j = 0; j < 4; j++) {
                const int     shift = 2 * j;
                const uint8_t m     = (uint8_t) (1u << (4 * half + j));
                for (int sub = 0; sub < 2; sub++) {
                    const float dl = d * (float) scale[8 * half + 2 * j + sub];
                    for (int l = 16 * sub; l < 16 * sub + 16; l++) {
                        const int qv = ((q[l] >> shift) & 3) - ((x.hmask[l] & m) ? 0 : 4);
                        *y++         = dl * (float) qv;
                    }
                }
            }
        }
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of a q4_K / q5_K block (ggml get_scale_min_k4). */
static inline void k4_scale_min(int j, const uint8_t * q, uint8_t * sc, uint8_t * m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m  = q[j + 4] & 63;
    } else {
        *sc = (uint8_t) ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m  = (uint8_t) ((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* 4 chunks of 64: 32 bytes of qs, low nibbles = sub-block 2c, high = 2c+1. x = (d*sc) * q - (dmin*m). */
void rk_cpu_dequant_q4_K(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK_K; b++) {
        struct rk_block_q4_K x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d    = half_to_f32(x.d);
        const float dmin = half_to_f32(x.dmin);
        float *     y    = dst + b * RK_QK_K;
        for (int c = 0; c < 4; c++) {
            const uint8_t * q = x.qs + 32 * c;
            uint8_t         sc, m;
            k4_scale_min(2 * c, x.scales, &sc, &m);
            const float d1 = d * (float) sc, m1 = dmin * (float) m;
            k4_scale_min(2 * c + 1, x.scales, &sc, &m);
            const float d2 = d * (float) sc, m2 = dmin * (float) m;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float) (q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float) (q[l] >> 4) - m2;
            y += 64;
        }
    }
}

/* As q4_K; the fifth bit of element l of sub-block k is bit k of qh[l]. */
void rk_cpu_dequant_q5_K(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK_K; b++) {
        struct rk_block_q5_K x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d    = half_to_f32(x.d);
        const float dmin = half_to_f32(x.dmin);
        float *     y    = dst + b * RK_QK_K;
        for (int c = 0; c < 4; c++) {
            const uint8_t * q  = x.qs + 32 * c;
            const uint8_t   u1 = (uint8_t) (1u << (2 * c)), u2 = (uint8_t) (2u << (2 * c));
            uint8_t         sc, m;
            k4_scale_min(2 * c, x.scales, &sc, &m);
            const float d1 = d * (float) sc, m1 = dmin * (float) m;
            k4_scale_min(2 * c + 1, x.scales, &sc, &m);
            const float d2 = d * (float) sc, m2 = dmin * (float) m;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float) ((q[l] & 0x0F) + ((x.qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float) ((q[l] >> 4) + ((x.qh[l] & u2) ? 16 : 0)) - m2;
            y += 64;
        }
    }
}

/*
 * Two halves of 128, each with 64 bytes of ql and 32 of qh. Element 32k + l of a half (k 0..3, l 0..31):
 * low 4 bits from ql[l + 32 (k % 2)] (nibble k / 2), high 2 bits from qh[l] >> 2k; q - 32; scale (l / 16) + 2k.
 * x = (d * scale) * q.
 */
void rk_cpu_dequant_q6_K(const void * src, float * dst, int64_t n) {
    const uint8_t * s = src;
    for (int64_t b = 0; b < n / RK_QK_K; b++) {
        struct rk_block_q6_K x;
        memcpy(&x, s + b * sizeof(x), sizeof(x));
        const float d = half_to_f32(x.d);
        float *     y = dst + b * RK_QK_K;
        for (int half = 0; half < 2; half++) {
            const uint8_t * ql = x.ql + 64 * half;
            const uint8_t * qh = x.qh + 32 * half;
            const int8_t *  sc = x.scales + 8 * half;
            for (int k = 0; k < 4; k++) {
                for (int l = 0; l < 32; l++) {
                    const int lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                    const int hi = (qh[l] >> (2 * k)) & 3;
                    y[32 * k + l] = (d * (float) sc[l / 16 + 2 * k]) * (float) ((lo | hi << 4) - 32);
                }
            }
            y += 128;
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * traits */

#define Q(id, nm, bs, ts, fn) [id] = { nm, bs, ts, true, fn }
#define P(id, nm, ts, fn)     [id] = { nm, 1, ts, false, fn }

const struct rk_ggml_type_traits rk_ggml_type_traits[RK_GGML_TYPE_COUNT] = {
    P(RK_GGML_TYPE_F32,  "F32",  4, rk_cpu_dequant_f32),
    P(RK_GGML_TYPE_F16,  "F16",  2, rk_cpu_dequant_f16),
    Q(RK_GGML_TYPE_Q4_0, "Q4_0", RK_QK4_0, sizeof(struct rk_block_q4_0), rk_cpu_dequant_q4_0),
    Q(RK_GGML_TYPE_Q4_1, "Q4_1", RK_QK4_1, sizeof(struct rk_block_q4_1), rk_cpu_dequant_q4_1),
    Q(RK_GGML_TYPE_Q5_0, "Q5_0", RK_QK5_0, sizeof(struct rk_block_q5_0), rk_cpu_dequant_q5_0),
    Q(RK_GGML_TYPE_Q5_1, "Q5_1", RK_QK5_1, sizeof(struct rk_block_q5_1), rk_cpu_dequant_q5_1),
    Q(RK_GGML_TYPE_Q8_0, "Q8_0", RK_QK8_0, sizeof(struct rk_block_q8_0), rk_cpu_dequant_q8_0),
    Q(RK_GGML_TYPE_Q8_1, "Q8_1", 32, 36, NULL),
    Q(RK_GGML_TYPE_Q2_K, "Q2_K", RK_QK_K, sizeof(struct rk_block_q2_K), rk_cpu_dequant_q2_K),
    Q(RK_GGML_TYPE_Q3_K, "Q3_K", RK_QK_K, sizeof(struct rk_block_q3_K), rk_cpu_dequant_q3_K),
    Q(RK_GGML_TYPE_Q4_K, "Q4_K", RK_QK_K, sizeof(struct rk_block_q4_K), rk_cpu_dequant_q4_K),
    Q(RK_GGML_TYPE_Q5_K, "Q5_K", RK_QK_K, sizeof(struct rk_block_q5_K), rk_cpu_dequant_q5_K),
    Q(RK_GGML_TYPE_Q6_K, "Q6_K", RK_QK_K, sizeof(struct rk_block_q6_K), rk_cpu_dequant_q6_K),
    Q(RK_GGML_TYPE_Q8_K, "Q8_K", RK_QK_K, sizeof(struct rk_block_q8_K), NULL),
    /* known to ggml, not dequantized by rk: sizes from ggml's type_traits, so files holding them still open */
    Q(RK_GGML_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66, NULL),
    Q(RK_GGML_TYPE_IQ2_XS,  "IQ2_XS",  256, 74, NULL),
    Q(RK_GGML_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98, NULL),
    Q(RK_GGML_TYPE_IQ1_S,   "IQ1_S",   256, 50, NULL),
    Q(RK_GGML_TYPE_IQ4_NL,  "IQ4_NL",  32, 18, NULL),
    Q(RK_GGML_TYPE_IQ3_S,   "IQ3_S",   256, 110, NULL),
    Q(RK_GGML_TYPE_IQ2_S,   "IQ2_S",   256, 82, NULL),
    Q(RK_GGML_TYPE_IQ4_XS,  "IQ4_XS",  256, 136, NULL),
    P(RK_GGML_TYPE_I8,   "I8",   1, NULL),
    P(RK_GGML_TYPE_I16,  "I16",  2, NULL),
    P(RK_GGML_TYPE_I32,  "I32",  4, NULL),
    P(RK_GGML_TYPE_I64,  "I64",  8, NULL),
    P(RK_GGML_TYPE_F64,  "F64",  8, NULL),
    Q(RK_GGML_TYPE_IQ1_M,   "IQ1_M",   256, 56, NULL),
    P(RK_GGML_TYPE_BF16, "BF16", 2, rk_cpu_dequant_bf16),
    Q(RK_GGML_TYPE_TQ1_0,   "TQ1_0",   256, 54, NULL),
    Q(RK_GGML_TYPE_TQ2_0,   "TQ2_0",   256, 66, NULL),
    Q(RK_GGML_TYPE_MXFP4,   "MXFP4",   32, 17, NULL),
};

#undef Q
#undef P

const struct rk_ggml_type_traits * rk_ggml_type_get(uint32_t t) {
    if (t >= RK_GGML_TYPE_COUNT || rk_ggml_type_traits[t].blck_size == 0) return NULL;
    return &rk_ggml_type_traits[t];
}
