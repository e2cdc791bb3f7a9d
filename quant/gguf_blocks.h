/*
 * gguf_blocks.h: the ggml tensor types that GGUF checkpoints use: the type ids (as stored in a GGUF file), a
 * traits table (elements and bytes per block, name), the block structs of the quantized types with static
 * asserts on their sizes, and the CPU reference dequantize-row functions.
 *
 * Layouts follow ggml's src/ggml-common.h (block_q4_0, block_q8_0, block_q4_K, ...); the dequantization follows
 * ggml's dequantize_row_* and evaluates every product in the same order in f32, so results are bit-identical to
 * ggml and to the numpy dequantization of the `gguf` Python package (tests/test_gguf.c checks this). That
 * requires no FMA contraction: the Makefile builds with -std=c11, under which GCC defaults to
 * -ffp-contract=off.
 *
 * Every block is little-endian. Scales are IEEE half (uint16_t bits here) unless noted.
 */
#ifndef RK_QUANT_GGUF_BLOCKS_H
#define RK_QUANT_GGUF_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_QK4_0 32
#define RK_QK4_1 32
#define RK_QK5_0 32
#define RK_QK5_1 32
#define RK_QK8_0 32
#define RK_QK_K  256 /* super-block size of the k-quants */
#define RK_K_SCALE_SIZE 12

/* ggml type ids, as stored in GGUF tensor infos (ggml.h enum ggml_type). Gaps are ids ggml has removed. */
enum rk_ggml_type {
    RK_GGML_TYPE_F32     = 0,
    RK_GGML_TYPE_F16     = 1,
    RK_GGML_TYPE_Q4_0    = 2,
    RK_GGML_TYPE_Q4_1    = 3,
    RK_GGML_TYPE_Q5_0    = 6,
    RK_GGML_TYPE_Q5_1    = 7,
    RK_GGML_TYPE_Q8_0    = 8,
    RK_GGML_TYPE_Q8_1    = 9,
    RK_GGML_TYPE_Q2_K    = 10,
    RK_GGML_TYPE_Q3_K    = 11,
    RK_GGML_TYPE_Q4_K    = 12,
    RK_GGML_TYPE_Q5_K    = 13,
    RK_GGML_TYPE_Q6_K    = 14,
    RK_GGML_TYPE_Q8_K    = 15,
    RK_GGML_TYPE_IQ2_XXS = 16,
    RK_GGML_TYPE_IQ2_XS  = 17,
    RK_GGML_TYPE_IQ3_XXS = 18,
    RK_GGML_TYPE_IQ1_S   = 19,
    RK_GGML_TYPE_IQ4_NL  = 20,
    RK_GGML_TYPE_IQ3_S   = 21,
    RK_GGML_TYPE_IQ2_S   = 22,
    RK_GGML_TYPE_IQ4_XS  = 23,
    RK_GGML_TYPE_I8      = 24,
    RK_GGML_TYPE_I16     = 25,
    RK_GGML_TYPE_I32     = 26,
    RK_GGML_TYPE_I64     = 27,
    RK_GGML_TYPE_F64     = 28,
    RK_GGML_TYPE_IQ1_M   = 29,
    RK_GGML_TYPE_BF16    = 30,
    RK_GGML_TYPE_TQ1_0   = 34,
    RK_GGML_TYPE_TQ2_0   = 35,
    RK_GGML_TYPE_MXFP4   = 39,
    RK_GGML_TYPE_COUNT   = 40
};

/* Dequantizes n values (a multiple of the block size) from src (any alignment) into dst. */
typedef void (*rk_ggml_to_f32_fn)(const void * src, float * dst, int64_t n);

struct rk_ggml_type_traits {
    const char *      name;      /* "Q4_K"; NULL for an id ggml does not define */
    int64_t           blck_size; /* elements per block; 0 for an undefined id */
    size_t            type_size; /* bytes per block */
    bool              is_quantized;
    rk_ggml_to_f32_fn to_f32;    /* CPU reference; NULL where rk cannot dequantize the type */
};

extern const struct rk_ggml_type_traits rk_ggml_type_traits[RK_GGML_TYPE_COUNT];

/* The traits of type id t, or NULL when t is not a ggml type (out of range or a removed id). Cannot fail. */
const struct rk_ggml_type_traits * rk_ggml_type_get(uint32_t t);

/* ------------------------------------------------------------------------------------------------
 * block structs (ggml-common.h) */

struct rk_block_q4_0 {
    uint16_t d;                   /* scale */
    uint8_t  qs[RK_QK4_0 / 2];    /* nibbles: element j in the low nibble of byte j, j+16 in the high one */
};
_Static_assert(sizeof(struct rk_block_q4_0) == 18, "block_q4_0 is 18 bytes");

struct rk_block_q4_1 {
    uint16_t d;                   /* scale */
    uint16_t m;                   /* min */
    uint8_t  qs[RK_QK4_1 / 2];
};
_Static_assert(sizeof(struct rk_block_q4_1) == 20, "block_q4_1 is 20 bytes");

struct rk_block_q5_0 {
    uint16_t d;
    uint8_t  qh[4];               /* fifth bit of element j is bit j of this little-endian u32 */
    uint8_t  qs[RK_QK5_0 / 2];
};
_Static_assert(sizeof(struct rk_block_q5_0) == 22, "block_q5_0 is 22 bytes");

struct rk_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t  qh[4];
    uint8_t  qs[RK_QK5_1 / 2];
};
_Static_assert(sizeof(struct rk_block_q5_1) == 24, "block_q5_1 is 24 bytes");

struct rk_block_q8_0 {
    uint16_t d;
    int8_t   qs[RK_QK8_0];
};
_Static_assert(sizeof(struct rk_block_q8_0) == 34, "block_q8_0 is 34 bytes");

/* 16 sub-blocks of 16; 2-bit quants; 4-bit scale (low nibble) and min (high nibble) per sub-block. */
struct rk_block_q2_K {
    uint8_t  scales[RK_QK_K / 16];
    uint8_t  qs[RK_QK_K / 4];
    uint16_t d;                   /* super-block scale for the scales */
    uint16_t dmin;                /* super-block scale for the mins */
};
_Static_assert(sizeof(struct rk_block_q2_K) == 84, "block_q2_K is 84 bytes");

/* 16 sub-blocks of 16; 3-bit quants (2 low bits in qs, high bit in hmask); 6-bit signed scales packed in 12 B. */
struct rk_block_q3_K {
    uint8_t  hmask[RK_QK_K / 8];
    uint8_t  qs[RK_QK_K / 4];
    uint8_t  scales[12];
    uint16_t d;
};
_Static_assert(sizeof(struct rk_block_q3_K) == 110, "block_q3_K is 110 bytes");

/* 8 sub-blocks of 32; 4-bit quants; 6-bit scale and min per sub-block packed in 12 bytes. */
struct rk_block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t  scales[RK_K_SCALE_SIZE];
    uint8_t  qs[RK_QK_K / 2];
};
_Static_assert(sizeof(struct rk_block_q4_K) == 144, "block_q4_K is 144 bytes");

/* As q4_K plus a fifth bit per element in qh. */
struct rk_block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t  scales[RK_K_SCALE_SIZE];
    uint8_t  qh[RK_QK_K / 8];
    uint8_t  qs[RK_QK_K / 2];
};
_Static_assert(sizeof(struct rk_block_q5_K) == 176, "block_q5_K is 176 bytes");

/* 16 sub-blocks of 16; 6-bit quants (4 low bits in ql, 2 high in qh); 8-bit signed scales. */
struct rk_block_q6_K {
    uint8_t  ql[RK_QK_K / 2];
    uint8_t  qh[RK_QK_K / 4];
    int8_t   scales[RK_QK_K / 16];
    uint16_t d;
};
_Static_assert(sizeof(struct rk_block_q6_K) == 210, "block_q6_K is 210 bytes");

/* Intermediate type of ggml's dot products (activations); f32 scale, bsums = sums of 16 quants. */
struct rk_block_q8_K {
    float   d;
    int8_t  qs[RK_QK_K];
    int16_t bsums[RK_QK_K / 16];
};
_Static_assert(sizeof(struct rk_block_q8_K) == 292, "block_q8_K is 292 bytes");

/* ------------------------------------------------------------------------------------------------
 * CPU reference dequantization (quant/gguf_blocks_cpu.c). n is a multiple of the type's block size; src may
 * be unaligned (blocks are copied out with memcpy). Cannot fail. */

void rk_cpu_dequant_f32(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_f16(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_bf16(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q4_0(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q4_1(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q5_0(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q5_1(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q8_0(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q2_K(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q3_K(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q4_K(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q5_K(const void * src, float * dst, int64_t n);
void rk_cpu_dequant_q6_K(const void * src, float * dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
