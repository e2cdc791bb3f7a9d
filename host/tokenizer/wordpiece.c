/*
 * wordpiece.c: the BERT WordPiece tokenizer (see wordpiece.h for the pipeline and the contracts).
 *
 * Reference: Hugging Face tokenizers 0.23 (BertNormalizer, BertPreTokenizer, WordPiece), which is what
 * transformers' BertTokenizerFast runs. Character classes follow that implementation, not Python's unicodedata
 * (the slow BertTokenizerLegacy differs on a few chars: see tests/golden/gen_tokenizer.py):
 *   - "control" (dropped) is category Cc, Cf, Co or Cs except \t \n \r; unassigned (Cn) chars are kept;
 *   - whitespace is Rust's char::is_whitespace (the White_Space property);
 *   - punctuation is ASCII 33-47, 58-64, 91-96, 123-126 plus categories Pc Pd Ps Pe Pi Pf Po;
 *   - accents: NFD, then drop category Mn; lower-casing is Rust's char::to_lowercase (full mapping, so U+0130
 *     becomes "i\u0307"), done after accent stripping, char by char (no final-sigma rule);
 *   - CJK padding uses tokenizers' ranges (U+2B820..U+2B91F are not padded, unlike the original BERT).
 * The categories are those of tokenizers' own (older) tables: see "character classes".
 *
 * Encoding is one pass over the text with no allocation: normalized code points are appended to a word buffer
 * on the stack, and each finished word is split into pieces with a hash-table vocabulary lookup.
 */
#include "tokenizer/wordpiece.h"

#include "check.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#define WP_WORD_CAP_STACK  256   /* word buffer (chars) kept on the stack; max_input_chars_per_word above it mallocs */
#define WP_MAX_SPECIAL     64    /* special / added tokens matched on the raw text */
#define WP_MAX_PREFIX      16    /* bytes of the continuing-subword prefix ("##") */

struct wp_entry {
    uint32_t off;  /* offset of the token's bytes in the arena */
    uint32_t len;  /* token length in bytes */
    int32_t  id;   /* -1: empty slot */
};

struct wp_special_token {
    char *  text;  /* exact raw text, e.g. "[CLS]" */
    size_t  len;
    int32_t id;
};

struct rk_wordpiece {
    /* vocabulary: open-addressing hash table over an arena of token bytes */
    char *            arena;
    size_t            arena_len;
    size_t            arena_cap;
    struct wp_entry * table;
    uint64_t          table_mask;       /* table size - 1 (a power of two) */
    int64_t           n_tokens;         /* distinct tokens */
    int64_t           vocab_size;       /* max id + 1 */
    size_t            max_token_bytes;  /* longest token, bounds the longest-match search */

    /* options */
    bool    lowercase;
    bool    strip_accents;
    bool    chinese_chars;
    char    prefix[WP_MAX_PREFIX];      /* continuing-subword prefix, "##" */
    size_t  prefix_len;
    int64_t max_chars;                  /* max_input_chars_per_word, 100 */

    struct rk_wordpiece_special special;

    /* raw-text matches (special tokens) */
    struct wp_special_token specials[WP_MAX_SPECIAL];
    int                     n_specials;
    bool                    special_first[256]; /* first bytes of the specials */

    uint8_t ascii_class[128];  /* enum wp_ascii_class of each ASCII byte, filled at load */
};

/* ------------------------------------------------------------------------------------------------
 * vocabulary hash table */

static uint64_t wp_hash(const char * s, size_t n) {
    /* FNV-1a, 64-bit: short keys, good enough spread for ~30k tokens at load factor <= 0.5 */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char) s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int32_t wp_lookup(const struct rk_wordpiece * tok, const char * s, size_t n) {
    uint64_t i = wp_hash(s, n) & tok->table_mask;
    for (;;) {
        const struct wp_entry * e = &tok->table[i];
        if (e->id < 0) return -1;
        if (e->len == n && memcmp(tok->arena + e->off, s, n) == 0) return e->id;
        i = (i + 1) & tok->table_mask;
    }
}

/* Sizes the table for n tokens (load factor <= 0.5); called once before the inserts. */
static void wp_table_init(struct rk_wordpiece * tok, int64_t n) {
    uint64_t size = 16;
    while (size < (uint64_t) n * 2) size <<= 1;
    tok->table      = rk_xmalloc(size * sizeof(struct wp_entry));
    tok->table_mask = size - 1;
    for (uint64_t i = 0; i < size; i++) tok->table[i].id = -1;
}

/* Inserts token -> id; a repeated token keeps the last id (as HF's dict does). Returns false when the table
 * would exceed its sizing (a caller bug). */
static bool wp_insert(struct rk_wordpiece * tok, const char * s, size_t n, int32_t id) {
    uint64_t i = wp_hash(s, n) & tok->table_mask;
    for (;;) {
        struct wp_entry * e = &tok->table[i];
        if (e->id < 0) break;
        if (e->len == n && memcmp(tok->arena + e->off, s, n) == 0) {
            e->id = id;
            return true;
        }
        i = (i + 1) & tok->table_mask;
    }
    if ((uint64_t) (tok->n_tokens + 1) * 2 > tok->table_mask + 1) return false;
    if (tok->arena_len + n > tok->arena_cap) {
        tok->arena_cap = (tok->arena_len + n) * 2 + 4096;
        tok->arena     = rk_xrealloc(tok->arena, tok->arena_cap);
    }
    if (tok->arena_len + n > UINT32_MAX) return false;
    memcpy(tok->arena + tok->arena_len, s, n);
    tok->table[i] = (struct wp_entry) { .off = (uint32_t) tok->arena_len, .len = (uint32_t) n, .id = id };
    tok->arena_len += n;
    tok->n_tokens++;
    if (id + (int64_t) 1 > tok->vocab_size) tok->vocab_size = id + (int64_t) 1;
    if (n > tok->max_token_bytes) tok->max_token_bytes = n;
    return true;
}

/* ------------------------------------------------------------------------------------------------
 * character classes
 *
 * tokenizers takes its categories (control, Mn, punctuation) and its NFD tables from about Unicode 8, older than
 * utf8proc's: marks, punctuation and format chars added since stay letters, U+11938 does not decompose and newer
 * marks have combining class 0. Its lowercase is Rust's std, newer than utf8proc's. So the tables below are
 * generated from tokenizers itself, code point by code point, and hold whatever utf8proc is installed; only the
 * decompositions and the combining-class values come from utf8proc. Regenerate them with
 * `python3 tests/golden/gen_tokenizer.py --tables` when tokenizers moves.
 */
struct wp_range {
    int32_t lo, hi; /* inclusive */
};

struct wp_case_run {
    int32_t lo, hi;  /* inclusive */
    int32_t stride;  /* every stride-th code point from lo maps ... */
    int32_t delta;   /* ... to cp + delta */
};

/* BEGIN generated by tests/golden/gen_tokenizer.py --tables (tokenizers 0.23.3) */
/* dropped by clean_text (Cc Cf Co Cs of tokenizers' tables, U+FFFD): 137681 code points in 25 ranges */
static const struct wp_range wp_control_ranges[] = {
    {0x0000, 0x0008}, {0x000B, 0x000C}, {0x000E, 0x001F}, {0x007F, 0x009F}, {0x00AD, 0x00AD}, {0x0600, 0x0605},
    {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F}, {0x180E, 0x180E}, {0x200B, 0x200F}, {0x202A, 0x202E},
    {0x2060, 0x2064}, {0x2066, 0x206F}, {0xE000, 0xF8FF}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0xFFFD, 0xFFFD},
    {0x110BD, 0x110BD}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001}, {0xE0020, 0xE007F}, {0xF0000, 0xFFFFD},
    {0x100000, 0x10FFFD},
};
/* removed when stripping accents (Mn of tokenizers' tables): 1567 code points in 266 ranges */
static const struct wp_range wp_mn_ranges[] = {
    {0x0300, 0x036F}, {0x0483, 0x0487}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2}, {0x05C4, 0x05C5},
    {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4},
    {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711}, {0x0730, 0x074A}, {0x07A6, 0x07B0}, {0x07EB, 0x07F3},
    {0x0816, 0x0819}, {0x081B, 0x0823}, {0x0825, 0x0827}, {0x0829, 0x082D}, {0x0859, 0x085B}, {0x08E3, 0x0902},
    {0x093A, 0x093A}, {0x093C, 0x093C}, {0x0941, 0x0948}, {0x094D, 0x094D}, {0x0951, 0x0957}, {0x0962, 0x0963},
    {0x0981, 0x0981}, {0x09BC, 0x09BC}, {0x09C1, 0x09C4}, {0x09CD, 0x09CD}, {0x09E2, 0x09E3}, {0x0A01, 0x0A02},
    {0x0A3C, 0x0A3C}, {0x0A41, 0x0A42}, {0x0A47, 0x0A48}, {0x0A4B, 0x0A4D}, {0x0A51, 0x0A51}, {0x0A70, 0x0A71},
    {0x0A75, 0x0A75}, {0x0A81, 0x0A82}, {0x0ABC, 0x0ABC}, {0x0AC1, 0x0AC5}, {0x0AC7, 0x0AC8}, {0x0ACD, 0x0ACD},
    {0x0AE2, 0x0AE3}, {0x0B01, 0x0B01}, {0x0B3C, 0x0B3C}, {0x0B3F, 0x0B3F}, {0x0B41, 0x0B44}, {0x0B4D, 0x0B4D},
    {0x0B56, 0x0B56}, {0x0B62, 0x0B63}, {0x0B82, 0x0B82}, {0x0BC0, 0x0BC0}, {0x0BCD, 0x0BCD}, {0x0C00, 0x0C00},
    {0x0C3E, 0x0C40}, {0x0C46, 0x0C48}, {0x0C4A, 0x0C4D}, {0x0C55, 0x0C56}, {0x0C62, 0x0C63}, {0x0C81, 0x0C81},
    {0x0CBC, 0x0CBC}, {0x0CBF, 0x0CBF}, {0x0CC6, 0x0CC6}, {0x0CCC, 0x0CCD}, {0x0CE2, 0x0CE3}, {0x0D01, 0x0D01},
    {0x0D41, 0x0D44}, {0x0D4D, 0x0D4D}, {0x0D62, 0x0D63}, {0x0DCA, 0x0DCA}, {0x0DD2, 0x0DD4}, {0x0DD6, 0x0DD6},
    {0x0E31, 0x0E31}, {0x0E34, 0x0E3A}, {0x0E47, 0x0E4E}, {0x0EB1, 0x0EB1}, {0x0EB4, 0x0EB9}, {0x0EBB, 0x0EBC},
    {0x0EC8, 0x0ECD}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35}, {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F7E},
    {0x0F80, 0x0F84}, {0x0F86, 0x0F87}, {0x0F8D, 0x0F97}, {0x0F99, 0x0FBC}, {0x0FC6, 0x0FC6}, {0x102D, 0x1030},
    {0x1032, 0x1037}, {0x1039, 0x103A}, {0x103D, 0x103E}, {0x1058, 0x1059}, {0x105E, 0x1060}, {0x1071, 0x1074},
    {0x1082, 0x1082}, {0x1085, 0x1086}, {0x108D, 0x108D}, {0x109D, 0x109D}, {0x135D, 0x135F}, {0x1712, 0x1714},
    {0x1732, 0x1734}, {0x1752, 0x1753}, {0x1772, 0x1773}, {0x17B4, 0x17B5}, {0x17B7, 0x17BD}, {0x17C6, 0x17C6},
    {0x17C9, 0x17D3}, {0x17DD, 0x17DD}, {0x180B, 0x180D}, {0x18A9, 0x18A9}, {0x1920, 0x1922}, {0x1927, 0x1928},
    {0x1932, 0x1932}, {0x1939, 0x193B}, {0x1A17, 0x1A18}, {0x1A1B, 0x1A1B}, {0x1A56, 0x1A56}, {0x1A58, 0x1A5E},
    {0x1A60, 0x1A60}, {0x1A62, 0x1A62}, {0x1A65, 0x1A6C}, {0x1A73, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AB0, 0x1ABD},
    {0x1B00, 0x1B03}, {0x1B34, 0x1B34}, {0x1B36, 0x1B3A}, {0x1B3C, 0x1B3C}, {0x1B42, 0x1B42}, {0x1B6B, 0x1B73},
    {0x1B80, 0x1B81}, {0x1BA2, 0x1BA5}, {0x1BA8, 0x1BA9}, {0x1BAB, 0x1BAD}, {0x1BE6, 0x1BE6}, {0x1BE8, 0x1BE9},
    {0x1BED, 0x1BED}, {0x1BEF, 0x1BF1}, {0x1C2C, 0x1C33}, {0x1C36, 0x1C37}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CE0},
    {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9}, {0x1DC0, 0x1DF5}, {0x1DFC, 0x1DFF},
    {0x20D0, 0x20DC}, {0x20E1, 0x20E1}, {0x20E5, 0x20F0}, {0x2CEF, 0x2CF1}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF},
    {0x302A, 0x302D}, {0x3099, 0x309A}, {0xA66F, 0xA66F}, {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1},
    {0xA802, 0xA802}, {0xA806, 0xA806}, {0xA80B, 0xA80B}, {0xA825, 0xA826}, {0xA8C4, 0xA8C4}, {0xA8E0, 0xA8F1},
    {0xA926, 0xA92D}, {0xA947, 0xA951}, {0xA980, 0xA982}, {0xA9B3, 0xA9B3}, {0xA9B6, 0xA9B9}, {0xA9BC, 0xA9BC},
    {0xA9E5, 0xA9E5}, {0xAA29, 0xAA2E}, {0xAA31, 0xAA32}, {0xAA35, 0xAA36}, {0xAA43, 0xAA43}, {0xAA4C, 0xAA4C},
    {0xAA7C, 0xAA7C}, {0xAAB0, 0xAAB0}, {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1},
    {0xAAEC, 0xAAED}, {0xAAF6, 0xAAF6}, {0xABE5, 0xABE5}, {0xABE8, 0xABE8}, {0xABED, 0xABED}, {0xFB1E, 0xFB1E},
    {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F}, {0x101FD, 0x101FD}, {0x102E0, 0x102E0}, {0x10376, 0x1037A}, {0x10A01, 0x10A03},
    {0x10A05, 0x10A06}, {0x10A0C, 0x10A0F}, {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6}, {0x11001, 0x11001},
    {0x11038, 0x11046}, {0x1107F, 0x11081}, {0x110B3, 0x110B6}, {0x110B9, 0x110BA}, {0x11100, 0x11102}, {0x11127, 0x1112B},
    {0x1112D, 0x11134}, {0x11173, 0x11173}, {0x11180, 0x11181}, {0x111B6, 0x111BE}, {0x111CA, 0x111CC}, {0x1122F, 0x11231},
    {0x11234, 0x11234}, {0x11236, 0x11237}, {0x112DF, 0x112DF}, {0x112E3, 0x112EA}, {0x11300, 0x11301}, {0x1133C, 0x1133C},
    {0x11340, 0x11340}, {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x114B3, 0x114B8}, {0x114BA, 0x114BA}, {0x114BF, 0x114C0},
    {0x114C2, 0x114C3}, {0x115B2, 0x115B5}, {0x115BC, 0x115BD}, {0x115BF, 0x115C0}, {0x115DC, 0x115DD}, {0x11633, 0x1163A},
    {0x1163D, 0x1163D}, {0x1163F, 0x11640}, {0x116AB, 0x116AB}, {0x116AD, 0x116AD}, {0x116B0, 0x116B5}, {0x116B7, 0x116B7},
    {0x1171D, 0x1171F}, {0x11722, 0x11725}, {0x11727, 0x1172B}, {0x16AF0, 0x16AF4}, {0x16B30, 0x16B36}, {0x16F8F, 0x16F92},
    {0x1BC9D, 0x1BC9E}, {0x1D167, 0x1D169}, {0x1D17B, 0x1D182}, {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD}, {0x1D242, 0x1D244},
    {0x1DA00, 0x1DA36}, {0x1DA3B, 0x1DA6C}, {0x1DA75, 0x1DA75}, {0x1DA84, 0x1DA84}, {0x1DA9B, 0x1DA9F}, {0x1DAA1, 0x1DAAF},
    {0x1E8D0, 0x1E8D6}, {0xE0100, 0xE01EF},
};
/* punctuation of BertPreTokenizer: 726 code points in 156 ranges */
static const struct wp_range wp_punct_ranges[] = {
    {0x0021, 0x002F}, {0x003A, 0x0040}, {0x005B, 0x0060}, {0x007B, 0x007E}, {0x00A1, 0x00A1}, {0x00A7, 0x00A7},
    {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB}, {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387},
    {0x055A, 0x055F}, {0x0589, 0x058A}, {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6},
    {0x05F3, 0x05F4}, {0x0609, 0x060A}, {0x060C, 0x060D}, {0x061B, 0x061B}, {0x061E, 0x061F}, {0x066A, 0x066D},
    {0x06D4, 0x06D4}, {0x0700, 0x070D}, {0x07F7, 0x07F9}, {0x0830, 0x083E}, {0x085E, 0x085E}, {0x0964, 0x0965},
    {0x0970, 0x0970}, {0x0AF0, 0x0AF0}, {0x0DF4, 0x0DF4}, {0x0E4F, 0x0E4F}, {0x0E5A, 0x0E5B}, {0x0F04, 0x0F12},
    {0x0F14, 0x0F14}, {0x0F3A, 0x0F3D}, {0x0F85, 0x0F85}, {0x0FD0, 0x0FD4}, {0x0FD9, 0x0FDA}, {0x104A, 0x104F},
    {0x10FB, 0x10FB}, {0x1360, 0x1368}, {0x1400, 0x1400}, {0x166D, 0x166E}, {0x169B, 0x169C}, {0x16EB, 0x16ED},
    {0x1735, 0x1736}, {0x17D4, 0x17D6}, {0x17D8, 0x17DA}, {0x1800, 0x180A}, {0x1944, 0x1945}, {0x1A1E, 0x1A1F},
    {0x1AA0, 0x1AA6}, {0x1AA8, 0x1AAD}, {0x1B5A, 0x1B60}, {0x1BFC, 0x1BFF}, {0x1C3B, 0x1C3F}, {0x1C7E, 0x1C7F},
    {0x1CC0, 0x1CC7}, {0x1CD3, 0x1CD3}, {0x2010, 0x2027}, {0x2030, 0x2043}, {0x2045, 0x2051}, {0x2053, 0x205E},
    {0x207D, 0x207E}, {0x208D, 0x208E}, {0x2308, 0x230B}, {0x2329, 0x232A}, {0x2768, 0x2775}, {0x27C5, 0x27C6},
    {0x27E6, 0x27EF}, {0x2983, 0x2998}, {0x29D8, 0x29DB}, {0x29FC, 0x29FD}, {0x2CF9, 0x2CFC}, {0x2CFE, 0x2CFF},
    {0x2D70, 0x2D70}, {0x2E00, 0x2E2E}, {0x2E30, 0x2E42}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301F},
    {0x3030, 0x3030}, {0x303D, 0x303D}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0xA4FE, 0xA4FF}, {0xA60D, 0xA60F},
    {0xA673, 0xA673}, {0xA67E, 0xA67E}, {0xA6F2, 0xA6F7}, {0xA874, 0xA877}, {0xA8CE, 0xA8CF}, {0xA8F8, 0xA8FA},
    {0xA8FC, 0xA8FC}, {0xA92E, 0xA92F}, {0xA95F, 0xA95F}, {0xA9C1, 0xA9CD}, {0xA9DE, 0xA9DF}, {0xAA5C, 0xAA5F},
    {0xAADE, 0xAADF}, {0xAAF0, 0xAAF1}, {0xABEB, 0xABEB}, {0xFD3E, 0xFD3F}, {0xFE10, 0xFE19}, {0xFE30, 0xFE52},
    {0xFE54, 0xFE61}, {0xFE63, 0xFE63}, {0xFE68, 0xFE68}, {0xFE6A, 0xFE6B}, {0xFF01, 0xFF03}, {0xFF05, 0xFF0A},
    {0xFF0C, 0xFF0F}, {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20}, {0xFF3B, 0xFF3D}, {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B},
    {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65}, {0x10100, 0x10102}, {0x1039F, 0x1039F}, {0x103D0, 0x103D0}, {0x1056F, 0x1056F},
    {0x10857, 0x10857}, {0x1091F, 0x1091F}, {0x1093F, 0x1093F}, {0x10A50, 0x10A58}, {0x10A7F, 0x10A7F}, {0x10AF0, 0x10AF6},
    {0x10B39, 0x10B3F}, {0x10B99, 0x10B9C}, {0x11047, 0x1104D}, {0x110BB, 0x110BC}, {0x110BE, 0x110C1}, {0x11140, 0x11143},
    {0x11174, 0x11175}, {0x111C5, 0x111C9}, {0x111CD, 0x111CD}, {0x111DB, 0x111DB}, {0x111DD, 0x111DF}, {0x11238, 0x1123D},
    {0x112A9, 0x112A9}, {0x114C6, 0x114C6}, {0x115C1, 0x115D7}, {0x11641, 0x11643}, {0x1173C, 0x1173E}, {0x12470, 0x12474},
    {0x16A6E, 0x16A6F}, {0x16AF5, 0x16AF5}, {0x16B37, 0x16B3B}, {0x16B44, 0x16B44}, {0x1BC9F, 0x1BC9F}, {0x1DA87, 0x1DA8B},
};
/* nonzero canonical combining class in tokenizers' NFD tables: 810 code points in 164 ranges */
static const struct wp_range wp_mark_ranges[] = {
    {0x0300, 0x033F}, {0x0342, 0x0342}, {0x0345, 0x034E}, {0x0350, 0x036F}, {0x0483, 0x0487}, {0x0591, 0x05BD},
    {0x05BF, 0x05BF}, {0x05C1, 0x05C2}, {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F},
    {0x0670, 0x0670}, {0x06D6, 0x06DC}, {0x06DF, 0x06E4}, {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x0711, 0x0711},
    {0x0730, 0x074A}, {0x07EB, 0x07F3}, {0x0816, 0x0819}, {0x081B, 0x0823}, {0x0825, 0x0827}, {0x0829, 0x082D},
    {0x0859, 0x085B}, {0x08D4, 0x08E1}, {0x08E3, 0x08FF}, {0x093C, 0x093C}, {0x094D, 0x094D}, {0x0951, 0x0954},
    {0x09BC, 0x09BC}, {0x09CD, 0x09CD}, {0x0A3C, 0x0A3C}, {0x0A4D, 0x0A4D}, {0x0ABC, 0x0ABC}, {0x0ACD, 0x0ACD},
    {0x0B3C, 0x0B3C}, {0x0B4D, 0x0B4D}, {0x0BCD, 0x0BCD}, {0x0C4D, 0x0C4D}, {0x0C55, 0x0C56}, {0x0CBC, 0x0CBC},
    {0x0CCD, 0x0CCD}, {0x0D4D, 0x0D4D}, {0x0DCA, 0x0DCA}, {0x0E38, 0x0E3A}, {0x0E48, 0x0E4B}, {0x0EB8, 0x0EB9},
    {0x0EC8, 0x0ECB}, {0x0F18, 0x0F19}, {0x0F35, 0x0F35}, {0x0F37, 0x0F37}, {0x0F39, 0x0F39}, {0x0F71, 0x0F72},
    {0x0F74, 0x0F74}, {0x0F7A, 0x0F7D}, {0x0F80, 0x0F80}, {0x0F82, 0x0F84}, {0x0F86, 0x0F87}, {0x0FC6, 0x0FC6},
    {0x1037, 0x1037}, {0x1039, 0x103A}, {0x108D, 0x108D}, {0x135D, 0x135F}, {0x1714, 0x1714}, {0x1734, 0x1734},
    {0x17D2, 0x17D2}, {0x17DD, 0x17DD}, {0x18A9, 0x18A9}, {0x1939, 0x193B}, {0x1A17, 0x1A18}, {0x1A60, 0x1A60},
    {0x1A75, 0x1A7C}, {0x1A7F, 0x1A7F}, {0x1AB0, 0x1ABD}, {0x1B34, 0x1B34}, {0x1B44, 0x1B44}, {0x1B6B, 0x1B73},
    {0x1BAA, 0x1BAB}, {0x1BE6, 0x1BE6}, {0x1BF2, 0x1BF3}, {0x1C37, 0x1C37}, {0x1CD0, 0x1CD2}, {0x1CD4, 0x1CE0},
    {0x1CE2, 0x1CE8}, {0x1CED, 0x1CED}, {0x1CF4, 0x1CF4}, {0x1CF8, 0x1CF9}, {0x1DC0, 0x1DF5}, {0x1DFB, 0x1DFF},
    {0x20D0, 0x20DC}, {0x20E1, 0x20E1}, {0x20E5, 0x20F0}, {0x2CEF, 0x2CF1}, {0x2D7F, 0x2D7F}, {0x2DE0, 0x2DFF},
    {0x302A, 0x302F}, {0x3099, 0x309A}, {0xA66F, 0xA66F}, {0xA674, 0xA67D}, {0xA69E, 0xA69F}, {0xA6F0, 0xA6F1},
    {0xA806, 0xA806}, {0xA8C4, 0xA8C4}, {0xA8E0, 0xA8F1}, {0xA92B, 0xA92D}, {0xA953, 0xA953}, {0xA9B3, 0xA9B3},
    {0xA9C0, 0xA9C0}, {0xAAB0, 0xAAB0}, {0xAAB2, 0xAAB4}, {0xAAB7, 0xAAB8}, {0xAABE, 0xAABF}, {0xAAC1, 0xAAC1},
    {0xAAF6, 0xAAF6}, {0xABED, 0xABED}, {0xFB1E, 0xFB1E}, {0xFE20, 0xFE2F}, {0x101FD, 0x101FD}, {0x102E0, 0x102E0},
    {0x10376, 0x1037A}, {0x10A0D, 0x10A0D}, {0x10A0F, 0x10A0F}, {0x10A38, 0x10A3A}, {0x10A3F, 0x10A3F}, {0x10AE5, 0x10AE6},
    {0x11046, 0x11046}, {0x1107F, 0x1107F}, {0x110B9, 0x110BA}, {0x11100, 0x11102}, {0x11133, 0x11134}, {0x11173, 0x11173},
    {0x111C0, 0x111C0}, {0x111CA, 0x111CA}, {0x11235, 0x11236}, {0x112E9, 0x112EA}, {0x1133C, 0x1133C}, {0x1134D, 0x1134D},
    {0x11366, 0x1136C}, {0x11370, 0x11374}, {0x11442, 0x11442}, {0x11446, 0x11446}, {0x114C2, 0x114C3}, {0x115BF, 0x115C0},
    {0x1163F, 0x1163F}, {0x116B6, 0x116B7}, {0x1172B, 0x1172B}, {0x11C3F, 0x11C3F}, {0x16AF0, 0x16AF4}, {0x16B30, 0x16B36},
    {0x1BC9E, 0x1BC9E}, {0x1D165, 0x1D169}, {0x1D16D, 0x1D172}, {0x1D17B, 0x1D182}, {0x1D185, 0x1D18B}, {0x1D1AA, 0x1D1AD},
    {0x1D242, 0x1D244}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024}, {0x1E026, 0x1E02A},
    {0x1E8D0, 0x1E8D6}, {0x1E944, 0x1E94A},
};
/* lowercase (Rust char::to_lowercase) except U+0130: 1487 code points in 185 runs */
static const struct wp_case_run wp_lower_runs[] = {
    {0x0041, 0x005A, 1, 32}, {0x00C0, 0x00D6, 1, 32}, {0x00D8, 0x00DE, 1, 32}, {0x0100, 0x012E, 2, 1},
    {0x0132, 0x0136, 2, 1}, {0x0139, 0x0147, 2, 1}, {0x014A, 0x0176, 2, 1}, {0x0178, 0x0178, 1, -121},
    {0x0179, 0x017D, 2, 1}, {0x0181, 0x0181, 1, 210}, {0x0182, 0x0184, 2, 1}, {0x0186, 0x0186, 1, 206},
    {0x0187, 0x0187, 1, 1}, {0x0189, 0x018A, 1, 205}, {0x018B, 0x018B, 1, 1}, {0x018E, 0x018E, 1, 79},
    {0x018F, 0x018F, 1, 202}, {0x0190, 0x0190, 1, 203}, {0x0191, 0x0191, 1, 1}, {0x0193, 0x0193, 1, 205},
    {0x0194, 0x0194, 1, 207}, {0x0196, 0x0196, 1, 211}, {0x0197, 0x0197, 1, 209}, {0x0198, 0x0198, 1, 1},
    {0x019C, 0x019C, 1, 211}, {0x019D, 0x019D, 1, 213}, {0x019F, 0x019F, 1, 214}, {0x01A0, 0x01A4, 2, 1},
    {0x01A6, 0x01A6, 1, 218}, {0x01A7, 0x01A7, 1, 1}, {0x01A9, 0x01A9, 1, 218}, {0x01AC, 0x01AC, 1, 1},
    {0x01AE, 0x01AE, 1, 218}, {0x01AF, 0x01AF, 1, 1}, {0x01B1, 0x01B2, 1, 217}, {0x01B3, 0x01B5, 2, 1},
    {0x01B7, 0x01B7, 1, 219}, {0x01B8, 0x01B8, 1, 1}, {0x01BC, 0x01BC, 1, 1}, {0x01C4, 0x01C4, 1, 2},
    {0x01C5, 0x01C5, 1, 1}, {0x01C7, 0x01C7, 1, 2}, {0x01C8, 0x01C8, 1, 1}, {0x01CA, 0x01CA, 1, 2},
    {0x01CB, 0x01DB, 2, 1}, {0x01DE, 0x01EE, 2, 1}, {0x01F1, 0x01F1, 1, 2}, {0x01F2, 0x01F4, 2, 1},
    {0x01F6, 0x01F6, 1, -97}, {0x01F7, 0x01F7, 1, -56}, {0x01F8, 0x021E, 2, 1}, {0x0220, 0x0220, 1, -130},
    {0x0222, 0x0232, 2, 1}, {0x023A, 0x023A, 1, 10795}, {0x023B, 0x023B, 1, 1}, {0x023D, 0x023D, 1, -163},
    {0x023E, 0x023E, 1, 10792}, {0x0241, 0x0241, 1, 1}, {0x0243, 0x0243, 1, -195}, {0x0244, 0x0244, 1, 69},
    {0x0245, 0x0245, 1, 71}, {0x0246, 0x024E, 2, 1}, {0x0370, 0x0372, 2, 1}, {0x0376, 0x0376, 1, 1},
    {0x037F, 0x037F, 1, 116}, {0x0386, 0x0386, 1, 38}, {0x0388, 0x038A, 1, 37}, {0x038C, 0x038C, 1, 64},
    {0x038E, 0x038F, 1, 63}, {0x0391, 0x03A1, 1, 32}, {0x03A3, 0x03AB, 1, 32}, {0x03CF, 0x03CF, 1, 8},
    {0x03D8, 0x03EE, 2, 1}, {0x03F4, 0x03F4, 1, -60}, {0x03F7, 0x03F7, 1, 1}, {0x03F9, 0x03F9, 1, -7},
    {0x03FA, 0x03FA, 1, 1}, {0x03FD, 0x03FF, 1, -130}, {0x0400, 0x040F, 1, 80}, {0x0410, 0x042F, 1, 32},
    {0x0460, 0x0480, 2, 1}, {0x048A, 0x04BE, 2, 1}, {0x04C0, 0x04C0, 1, 15}, {0x04C1, 0x04CD, 2, 1},
    {0x04D0, 0x052E, 2, 1}, {0x0531, 0x0556, 1, 48}, {0x10A0, 0x10C5, 1, 7264}, {0x10C7, 0x10C7, 1, 7264},
    {0x10CD, 0x10CD, 1, 7264}, {0x13A0, 0x13EF, 1, 38864}, {0x13F0, 0x13F5, 1, 8}, {0x1C89, 0x1C89, 1, 1},
    {0x1C90, 0x1CBA, 1, -3008}, {0x1CBD, 0x1CBF, 1, -3008}, {0x1E00, 0x1E94, 2, 1}, {0x1E9E, 0x1E9E, 1, -7615},
    {0x1EA0, 0x1EFE, 2, 1}, {0x1F08, 0x1F0F, 1, -8}, {0x1F18, 0x1F1D, 1, -8}, {0x1F28, 0x1F2F, 1, -8},
    {0x1F38, 0x1F3F, 1, -8}, {0x1F48, 0x1F4D, 1, -8}, {0x1F59, 0x1F5F, 2, -8}, {0x1F68, 0x1F6F, 1, -8},
    {0x1F88, 0x1F8F, 1, -8}, {0x1F98, 0x1F9F, 1, -8}, {0x1FA8, 0x1FAF, 1, -8}, {0x1FB8, 0x1FB9, 1, -8},
    {0x1FBA, 0x1FBB, 1, -74}, {0x1FBC, 0x1FBC, 1, -9}, {0x1FC8, 0x1FCB, 1, -86}, {0x1FCC, 0x1FCC, 1, -9},
    {0x1FD8, 0x1FD9, 1, -8}, {0x1FDA, 0x1FDB, 1, -100}, {0x1FE8, 0x1FE9, 1, -8}, {0x1FEA, 0x1FEB, 1, -112},
    {0x1FEC, 0x1FEC, 1, -7}, {0x1FF8, 0x1FF9, 1, -128}, {0x1FFA, 0x1FFB, 1, -126}, {0x1FFC, 0x1FFC, 1, -9},
    {0x2126, 0x2126, 1, -7517}, {0x212A, 0x212A, 1, -8383}, {0x212B, 0x212B, 1, -8262}, {0x2132, 0x2132, 1, 28},
    {0x2160, 0x216F, 1, 16}, {0x2183, 0x2183, 1, 1}, {0x24B6, 0x24CF, 1, 26}, {0x2C00, 0x2C2F, 1, 48},
    {0x2C60, 0x2C60, 1, 1}, {0x2C62, 0x2C62, 1, -10743}, {0x2C63, 0x2C63, 1, -3814}, {0x2C64, 0x2C64, 1, -10727},
    {0x2C67, 0x2C6B, 2, 1}, {0x2C6D, 0x2C6D, 1, -10780}, {0x2C6E, 0x2C6E, 1, -10749}, {0x2C6F, 0x2C6F, 1, -10783},
    {0x2C70, 0x2C70, 1, -10782}, {0x2C72, 0x2C72, 1, 1}, {0x2C75, 0x2C75, 1, 1}, {0x2C7E, 0x2C7F, 1, -10815},
    {0x2C80, 0x2CE2, 2, 1}, {0x2CEB, 0x2CED, 2, 1}, {0x2CF2, 0x2CF2, 1, 1}, {0xA640, 0xA66C, 2, 1},
    {0xA680, 0xA69A, 2, 1}, {0xA722, 0xA72E, 2, 1}, {0xA732, 0xA76E, 2, 1}, {0xA779, 0xA77B, 2, 1},
    {0xA77D, 0xA77D, 1, -35332}, {0xA77E, 0xA786, 2, 1}, {0xA78B, 0xA78B, 1, 1}, {0xA78D, 0xA78D, 1, -42280},
    {0xA790, 0xA792, 2, 1}, {0xA796, 0xA7A8, 2, 1}, {0xA7AA, 0xA7AA, 1, -42308}, {0xA7AB, 0xA7AB, 1, -42319},
    {0xA7AC, 0xA7AC, 1, -42315}, {0xA7AD, 0xA7AD, 1, -42305}, {0xA7AE, 0xA7AE, 1, -42308}, {0xA7B0, 0xA7B0, 1, -42258},
    {0xA7B1, 0xA7B1, 1, -42282}, {0xA7B2, 0xA7B2, 1, -42261}, {0xA7B3, 0xA7B3, 1, 928}, {0xA7B4, 0xA7C2, 2, 1},
    {0xA7C4, 0xA7C4, 1, -48}, {0xA7C5, 0xA7C5, 1, -42307}, {0xA7C6, 0xA7C6, 1, -35384}, {0xA7C7, 0xA7C9, 2, 1},
    {0xA7CB, 0xA7CB, 1, -42343}, {0xA7CC, 0xA7DA, 2, 1}, {0xA7DC, 0xA7DC, 1, -42561}, {0xA7F5, 0xA7F5, 1, 1},
    {0xFF21, 0xFF3A, 1, 32}, {0x10400, 0x10427, 1, 40}, {0x104B0, 0x104D3, 1, 40}, {0x10570, 0x1057A, 1, 39},
    {0x1057C, 0x1058A, 1, 39}, {0x1058C, 0x10592, 1, 39}, {0x10594, 0x10595, 1, 39}, {0x10C80, 0x10CB2, 1, 64},
    {0x10D50, 0x10D65, 1, 32}, {0x118A0, 0x118BF, 1, 32}, {0x16E40, 0x16E5F, 1, 32}, {0x16EA0, 0x16EB8, 1, 27},
    {0x1E900, 0x1E921, 1, 34},
};
/* END generated */

#define WP_NRANGES(a) (sizeof(a) / sizeof((a)[0]))

static bool wp_in_ranges(const struct wp_range * r, size_t n, int32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

/* Rust's char::is_whitespace: the White_Space property (the generator asserts this list). */
static bool wp_is_whitespace(int32_t cp) {
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* Dropped by clean_text: NUL, U+FFFD and tokenizers' Cc/Cf/Co/Cs, except \t \n \r (unassigned chars stay). */
static bool wp_is_control(int32_t cp) {
    return wp_in_ranges(wp_control_ranges, WP_NRANGES(wp_control_ranges), cp);
}

/* BertPreTokenizer's punctuation: ASCII 33-47, 58-64, 91-96, 123-126 plus tokenizers' P* categories. */
static bool wp_is_punct(int32_t cp) {
    return wp_in_ranges(wp_punct_ranges, WP_NRANGES(wp_punct_ranges), cp);
}

/* Nonspacing marks, removed when stripping accents. */
static bool wp_is_mn(int32_t cp) {
    return wp_in_ranges(wp_mn_ranges, WP_NRANGES(wp_mn_ranges), cp);
}

/* Single-char lowercase (U+0130, the one multi-char mapping, is handled by the caller). */
static int32_t wp_lower(int32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    size_t lo = 0, hi = WP_NRANGES(wp_lower_runs);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct wp_case_run * r = &wp_lower_runs[mid];
        if (cp < r->lo) hi = mid;
        else if (cp > r->hi) lo = mid + 1;
        else return (cp - r->lo) % r->stride == 0 ? cp + r->delta : cp;
    }
    return cp;
}

/* Canonical combining class as tokenizers' NFD tables have it: utf8proc's for the marks those tables know (the
 * class of a char never changes once assigned), 0 (a starter) for marks added since. */
static uint8_t wp_ccc(int32_t cp) {
    if (cp < 0x300 || !wp_in_ranges(wp_mark_ranges, WP_NRANGES(wp_mark_ranges), cp)) return 0;
    return (uint8_t) utf8proc_get_property(cp)->combining_class;
}

/* Canonical decomposition as tokenizers' NFD tables have it: utf8proc's, less the decompositions added after
 * those tables (U+11938, Unicode 13). Writes up to 8 code points to d and returns their count. */
static int wp_decompose(int32_t cp, int32_t * d) {
    if (cp < 0xC0 || cp == 0x11938) {
        d[0] = cp;
        return 1;
    }
    int              boundclass = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(cp, d, 8, UTF8PROC_DECOMPOSE, &boundclass);
    if (n < 1 || n > 8) {
        d[0] = cp;
        return 1;
    }
    return (int) n;
}

/* The CJK ideograph blocks of tokenizers' is_chinese_char. It starts the fifth block at 0x2B920 where the original
 * BERT (and the slow Python tokenizer) has 0x2B820, so U+2B820..U+2B91F are not padded: we follow tokenizers. */
static bool wp_is_chinese(int32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Byte classes for the ASCII fast path. */
enum wp_ascii_class {
    WP_ASCII_DROP = 0, /* NUL and the C0 controls other than \t \n \r, and DEL */
    WP_ASCII_SPACE,
    WP_ASCII_PUNCT,
    WP_ASCII_WORD,
};

static enum wp_ascii_class wp_ascii_class(unsigned char c) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') return WP_ASCII_SPACE;
    if (wp_is_control(c)) return WP_ASCII_DROP;
    if (wp_is_punct(c)) return WP_ASCII_PUNCT;
    return WP_ASCII_WORD;
}

/* ------------------------------------------------------------------------------------------------
 * encoding state */

struct wp_state {
    const struct rk_wordpiece * tok;
    int32_t *                   ids;
    int64_t                     n_ids;
    int64_t                     cap_ids;   /* max_len - 1: room left for [SEP] */
    bool                        full;

    /* current word: code points (only the first word_cap are stored; a longer word is [UNK] anyway) */
    int32_t * cps;
    uint8_t * ccc;        /* canonical combining class of each stored char, for NFD reordering */
    int64_t   word_cap;
    int64_t   n_chars;    /* chars in the word, stored or not */
    int64_t   run_start;  /* first char after the last starter (ccc 0): where reordering may move a mark */

    /* consumer of finished words (cps[0..n_chars)): wp_word_pieces; a probe can substitute its own */
    void (*word_fn)(struct wp_state * st, int64_t n_chars);
    void * word_ctx;
};

static void wp_emit(struct wp_state * st, int32_t id) {
    if (st->n_ids < st->cap_ids) st->ids[st->n_ids++] = id;
    if (st->n_ids >= st->cap_ids) st->full = true;
}

/* Splits a finished word (st->cps[0..n_chars)) into pieces: greedy longest match first, continuation pieces carry
 * the prefix. */
static void wp_word_pieces(struct wp_state * st, int64_t n_chars) {
    const struct rk_wordpiece * tok = st->tok;
    if (n_chars > tok->max_chars) {
        wp_emit(st, tok->special.unk);
        return;
    }

    /* UTF-8 bytes of the word, after prefix_len bytes of headroom: a continuation lookup writes the prefix over
     * the already consumed bytes just before `start`, so no key is ever copied. */
    char   stack_buf[WP_MAX_PREFIX + 4 * WP_WORD_CAP_STACK];
    char * buf = stack_buf;
    size_t need = tok->prefix_len + 4 * (size_t) n_chars;
    if (need > sizeof(stack_buf)) buf = rk_xmalloc(need);
    char * w   = buf + tok->prefix_len;
    size_t len = 0;
    for (int64_t i = 0; i < n_chars; i++) {
        len += (size_t) utf8proc_encode_char(st->cps[i], (utf8proc_uint8_t *) w + len);
    }

    int64_t n0  = st->n_ids;
    bool    bad = false;
    size_t  start = 0;
    while (start < len) {
        size_t end = len;
        if (end - start > tok->max_token_bytes) {
            end = start + tok->max_token_bytes;
            while (end > start && (w[end] & 0xC0) == 0x80) end--;
        }
        if (start > 0) memcpy(w + start - tok->prefix_len, tok->prefix, tok->prefix_len);
        const char * key_base = start > 0 ? w + start - tok->prefix_len : w;
        size_t       key_pre  = start > 0 ? tok->prefix_len : 0;
        int32_t      id       = -1;
        while (end > start) {
            id = wp_lookup(tok, key_base, key_pre + (end - start));
            if (id >= 0) break;
            do end--; while (end > start && (w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            bad = true;
            break;
        }
        /* keep matching after the output is full: a later failure still turns the whole word into [UNK] */
        if (st->n_ids < st->cap_ids) st->ids[st->n_ids++] = id;
        start = end;
    }
    if (buf != stack_buf) free(buf);
    if (bad) {
        st->n_ids = n0;
        wp_emit(st, tok->special.unk);
    } else if (st->n_ids >= st->cap_ids) {
        st->full = true;
    }
}

/* Ends the current word, if any. */
static void wp_flush(struct wp_state * st) {
    int64_t n_chars = st->n_chars;
    st->n_chars     = 0;
    st->run_start   = 0;
    if (n_chars > 0) st->word_fn(st, n_chars);
}

/* Appends one normalized char to the word. With accent stripping the text is in NFD, whose canonical ordering
 * sorts each run of marks (ccc > 0) by combining class, stably: insert the mark at its place in the run. */
static void wp_push(struct wp_state * st, int32_t cp, uint8_t ccc) {
    if (st->n_chars < st->word_cap) {
        int64_t i = st->n_chars;
        if (ccc != 0) {
            while (i > st->run_start && st->ccc[i - 1] > ccc) {
                st->cps[i] = st->cps[i - 1];
                st->ccc[i] = st->ccc[i - 1];
                i--;
            }
        }
        st->cps[i] = cp;
        st->ccc[i] = ccc;
    }
    st->n_chars++;
    if (ccc == 0) st->run_start = st->n_chars;
}

/* Pre-tokenizes one normalized char: whitespace ends the word, punctuation is a word of its own. */
static void wp_pretok(struct wp_state * st, int32_t cp, uint8_t ccc) {
    if (wp_is_whitespace(cp)) {
        wp_flush(st);
    } else if (wp_is_punct(cp)) {
        wp_flush(st);
        wp_push(st, cp, ccc);
        wp_flush(st);
    } else {
        wp_push(st, cp, ccc);
    }
}

/* Lower-cases (Rust char::to_lowercase: U+0130 is the one multi-char mapping) and pre-tokenizes. */
static void wp_lower_pretok(struct wp_state * st, int32_t cp, uint8_t ccc) {
    if (!st->tok->lowercase) {
        wp_pretok(st, cp, ccc);
    } else if (cp == 0x130) {
        wp_pretok(st, 'i', 0);
        wp_pretok(st, 0x307, 0); /* after NFD would have run: not reordered */
    } else {
        wp_pretok(st, wp_lower(cp), ccc);
    }
}

/* Normalizes one raw non-ASCII code point and feeds the result on. */
static void wp_char(struct wp_state * st, int32_t cp) {
    const struct rk_wordpiece * tok = st->tok;
    if (cp == 0xFFFD || wp_is_control(cp)) return;
    if (wp_is_whitespace(cp)) {
        wp_flush(st);
        return;
    }
    bool chinese = tok->chinese_chars && wp_is_chinese(cp);
    if (chinese) wp_flush(st);
    if (tok->strip_accents) {
        int32_t d[8];
        int     nd = wp_decompose(cp, d);
        for (int k = 0; k < nd; k++) {
            uint8_t ccc = wp_ccc(d[k]);
            if (wp_is_mn(d[k])) {
                if (ccc == 0) st->run_start = st->n_chars; /* a removed starter still blocks reordering */
                continue;
            }
            wp_lower_pretok(st, d[k], ccc);
        }
    } else {
        wp_lower_pretok(st, cp, 0);
    }
    if (chinese) wp_flush(st);
}

/* Longest special token starting at p, or NULL. */
static const struct wp_special_token * wp_match_special(const struct rk_wordpiece * tok, const char * p) {
    const struct wp_special_token * best = NULL;
    for (int i = 0; i < tok->n_specials; i++) {
        const struct wp_special_token * s = &tok->specials[i];
        if (strncmp(p, s->text, s->len) == 0 && (best == NULL || s->len > best->len)) best = s;
    }
    return best;
}

/* Runs the pipeline over text, feeding words to st->word_fn and special tokens to st->ids, until the text ends or
 * st->full. */
static void wp_run(struct wp_state * st_, const char * text) {
    struct wp_state st = *st_;
    const struct rk_wordpiece * tok = st.tok;
    const unsigned char * p = (const unsigned char *) text;
    while (*p && !st.full) {
        unsigned char c = *p;
        if (tok->special_first[c]) {
            const struct wp_special_token * s = wp_match_special(tok, (const char *) p);
            if (s) {
                wp_flush(&st);
                if (!st.full) wp_emit(&st, s->id);
                p += s->len;
                continue;
            }
        }
        if (c < 0x80) {
            switch ((enum wp_ascii_class) tok->ascii_class[c]) {
            case WP_ASCII_DROP: break;
            case WP_ASCII_SPACE: wp_flush(&st); break;
            case WP_ASCII_PUNCT:
                wp_flush(&st);
                wp_push(&st, c, 0);
                wp_flush(&st);
                break;
            case WP_ASCII_WORD:
                wp_push(&st, (tok->lowercase && c >= 'A' && c <= 'Z') ? c + 32 : c, 0);
                break;
            }
            p++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p, -1, &cp);
        if (k < 1) { /* invalid UTF-8: drop the byte (HF would drop the U+FFFD a lossy decode puts there) */
            p++;
            continue;
        }
        wp_char(&st, cp);
        p += k;
    }
    if (!st.full) wp_flush(&st);
    *st_ = st;
}

/* ------------------------------------------------------------------------------------------------
 * public: encode */

int64_t rk_wordpiece_encode(const struct rk_wordpiece * tok, const char * text, int32_t * ids, int64_t max_len) {
    RK_ASSERT(tok != NULL && text != NULL && ids != NULL);
    RK_ASSERT(max_len >= 2);
    int32_t   cps_stack[WP_WORD_CAP_STACK + 1];
    uint8_t   ccc_stack[WP_WORD_CAP_STACK + 1];
    int32_t * cps      = cps_stack;
    uint8_t * ccc      = ccc_stack;
    int64_t   word_cap = tok->max_chars + 1; /* one more than the limit, to see that a word is too long */
    if (word_cap > WP_WORD_CAP_STACK + 1) {
        cps = rk_xmalloc((size_t) word_cap * sizeof(int32_t));
        ccc = rk_xmalloc((size_t) word_cap);
    }
    struct wp_state st = {
        .tok = tok, .ids = ids, .n_ids = 0, .cap_ids = max_len - 1, .full = false,
        .cps = cps, .ccc = ccc, .word_cap = word_cap, .n_chars = 0, .run_start = 0,
        .word_fn = wp_word_pieces, .word_ctx = NULL,
    };
    wp_emit(&st, tok->special.cls);
    wp_run(&st, text);
    int64_t n = st.n_ids;
    if (cps != cps_stack) {
        free(cps);
        free(ccc);
    }
    ids[n++] = tok->special.sep;
    return n;
}

int64_t rk_wordpiece_encode_batch(const struct rk_wordpiece * tok, const char * const * texts, int64_t n,
                                  int64_t max_len, bool pad_to_longest, int32_t * ids, int32_t * mask,
                                  int32_t * type_ids, int64_t * lengths) {
    RK_ASSERT(tok != NULL && ids != NULL && n >= 0 && max_len >= 2);
    RK_ASSERT(n == 0 || texts != NULL);
    int64_t * lens = lengths ? lengths : rk_xmalloc((size_t) (n > 0 ? n : 1) * sizeof(int64_t));
    /* encode row i at stride max_len, then compact to stride T (rows only move towards the front) */
    int64_t longest = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(max : longest) if (n > 64)
    for (int64_t i = 0; i < n; i++) {
        lens[i] = rk_wordpiece_encode(tok, texts[i], ids + i * max_len, max_len);
        if (lens[i] > longest) longest = lens[i];
    }
    int64_t T = pad_to_longest ? longest : max_len;
    for (int64_t i = 0; i < n; i++) {
        if (T != max_len) memmove(ids + i * T, ids + i * max_len, (size_t) lens[i] * sizeof(int32_t));
        for (int64_t t = lens[i]; t < T; t++) ids[i * T + t] = tok->special.pad;
        if (mask) {
            for (int64_t t = 0; t < T; t++) mask[i * T + t] = t < lens[i] ? 1 : 0;
        }
    }
    if (type_ids && n > 0) memset(type_ids, 0, (size_t) (n * T) * sizeof(int32_t));
    if (lens != lengths) free(lens);
    return T;
}

/* ------------------------------------------------------------------------------------------------
 * loading */

/* Reads a whole file into a NUL-terminated buffer (caller frees). RK_STATUS_IO naming the path on failure;
 * *missing tells a file that does not exist from one that cannot be read. */
static enum rk_status wp_read_file(const char * path, char ** data, size_t * len, bool * missing) {
    *data = NULL;
    if (missing) *missing = false;
    FILE * f = fopen(path, "rb");
    if (!f) {
        if (missing) *missing = errno == ENOENT;
        return rk_set_error(RK_STATUS_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    }
    size_t cap = 1 << 16, n = 0;
    char * buf = rk_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = rk_xrealloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f) != 0;
    fclose(f);
    if (err) {
        free(buf);
        return rk_set_error(RK_STATUS_IO, "%s: read error after %zu bytes", path, n);
    }
    buf[n] = '\0';
    *data  = buf;
    *len   = n;
    return RK_OK;
}

/* Parses JSON; RK_STATUS_FORMAT with "path:line:col" of the parse error on failure. */
static enum rk_status wp_parse_json(const char * path, const char * data, size_t len, cJSON ** out) {
    const char * end  = NULL;
    *out              = cJSON_ParseWithLengthOpts(data, len, &end, false);
    if (*out) return RK_OK;
    size_t pos = end && end >= data && end <= data + len ? (size_t) (end - data) : 0;
    int64_t line = 1, col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (data[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return rk_set_error(RK_STATUS_FORMAT, "%s:%lld:%lld: malformed JSON (byte %zu)", path, (long long) line,
                        (long long) col, pos);
}

/* Adds one raw-text special token. */
static enum rk_status wp_add_special(struct rk_wordpiece * tok, const char * path, const char * text, int32_t id) {
    size_t len = strlen(text);
    if (len == 0) return RK_OK;
    for (int i = 0; i < tok->n_specials; i++) {
        if (strcmp(tok->specials[i].text, text) == 0) {
            tok->specials[i].id = id;
            return RK_OK;
        }
    }
    if (tok->n_specials == WP_MAX_SPECIAL) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: more than %d added tokens", path, WP_MAX_SPECIAL);
    }
    tok->specials[tok->n_specials++] = (struct wp_special_token) { .text = rk_xstrdup(text), .len = len, .id = id };
    tok->special_first[(unsigned char) text[0]] = true;
    return RK_OK;
}

/* vocab.txt: one token per line, the id is the 0-based line number; a trailing \r is dropped. */
static enum rk_status wp_load_vocab_txt(struct rk_wordpiece * tok, const char * path) {
    char * data;
    size_t len;
    RK_TRY(wp_read_file(path, &data, &len, NULL));
    int64_t n_lines = 0;
    for (size_t i = 0; i < len; i++) n_lines += data[i] == '\n';
    if (len > 0 && data[len - 1] != '\n') n_lines++;
    if (n_lines == 0) {
        free(data);
        return rk_set_error(RK_STATUS_FORMAT, "%s: empty vocabulary", path);
    }
    if (n_lines > INT32_MAX) {
        free(data);
        return rk_set_error(RK_STATUS_FORMAT, "%s: %lld lines, more than int32 ids", path, (long long) n_lines);
    }
    wp_table_init(tok, n_lines + WP_MAX_SPECIAL);
    size_t  start = 0;
    int32_t id    = 0;
    while (start < len) {
        size_t end = start;
        while (end < len && data[end] != '\n') end++;
        size_t tlen = end - start;
        if (tlen > 0 && data[start + tlen - 1] == '\r') tlen--;
        if (memchr(data + start, '\0', tlen) != NULL) {
            free(data);
            return rk_set_error(RK_STATUS_FORMAT, "%s:%d: NUL byte in token", path, id + 1);
        }
        if (!wp_insert(tok, data + start, tlen, id)) {
            free(data);
            return rk_set_error(RK_STATUS_FORMAT, "%s:%d: vocabulary too large", path, id + 1);
        }
        id++;
        start = end + 1;
    }
    free(data);
    return RK_OK;
}

/* Reads an optional bool member: absent or null leaves *v alone; another type is a format error. */
static enum rk_status wp_json_bool(const char * path, const cJSON * obj, const char * key, bool * v, bool * is_null) {
    const cJSON * it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (is_null) *is_null = it == NULL || cJSON_IsNull(it);
    if (it == NULL || cJSON_IsNull(it)) return RK_OK;
    if (!cJSON_IsBool(it)) return rk_set_error(RK_STATUS_FORMAT, "%s: \"%s\" is not a boolean", path, key);
    *v = cJSON_IsTrue(it);
    return RK_OK;
}

/* BertNormalizer options from tokenizer.json's "normalizer" (when tokenizer_config.json is absent). */
static enum rk_status wp_load_normalizer(struct rk_wordpiece * tok, const char * path, const cJSON * norm) {
    if (norm == NULL || cJSON_IsNull(norm)) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: no normalizer (only BertNormalizer is implemented)", path);
    }
    const cJSON * type = cJSON_GetObjectItemCaseSensitive(norm, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "BertNormalizer") != 0) {
        return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: normalizer type %s (only BertNormalizer is implemented)", path,
                            cJSON_IsString(type) ? type->valuestring : "?");
    }
    bool clean = true, strip_null = true, strip = false;
    RK_TRY(wp_json_bool(path, norm, "clean_text", &clean, NULL));
    RK_TRY(wp_json_bool(path, norm, "lowercase", &tok->lowercase, NULL));
    RK_TRY(wp_json_bool(path, norm, "handle_chinese_chars", &tok->chinese_chars, NULL));
    RK_TRY(wp_json_bool(path, norm, "strip_accents", &strip, &strip_null));
    if (!clean) return rk_set_error(RK_STATUS_UNSUPPORTED, "%s: BertNormalizer clean_text false", path);
    tok->strip_accents = strip_null ? tok->lowercase : strip;
    return RK_OK;
}

/* tokenizer.json: model.vocab (token -> id), the WordPiece options and the added tokens. */
static enum rk_status wp_load_tokenizer_json(struct rk_wordpiece * tok, const char * path, bool use_normalizer) {
    char * data;
    size_t len;
    RK_TRY(wp_read_file(path, &data, &len, NULL));
    cJSON *        root;
    enum rk_status s = wp_parse_json(path, data, len, &root);
    free(data);
    if (s != RK_OK) return s;

    const cJSON * model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON * vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON * type  = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON * added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: no \"model\".\"vocab\" object", path);
        goto done;
    }
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "WordPiece") == 0)) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: model type %s (only WordPiece is implemented)", path,
                         cJSON_IsString(type) ? type->valuestring : "?");
        goto done;
    }
    const cJSON * prefix = cJSON_GetObjectItemCaseSensitive(model, "continuing_subword_prefix");
    if (cJSON_IsString(prefix)) {
        size_t plen = strlen(prefix->valuestring);
        if (plen >= WP_MAX_PREFIX) {
            s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: continuing_subword_prefix longer than %d bytes", path,
                             WP_MAX_PREFIX - 1);
            goto done;
        }
        memcpy(tok->prefix, prefix->valuestring, plen + 1);
        tok->prefix_len = plen;
    }
    const cJSON * max_chars = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (max_chars) {
        if (!cJSON_IsNumber(max_chars) || max_chars->valuedouble < 1 || max_chars->valuedouble > 1e6) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: bad max_input_chars_per_word", path);
            goto done;
        }
        tok->max_chars = (int64_t) max_chars->valuedouble;
    }

    int64_t n_added = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    wp_table_init(tok, cJSON_GetArraySize(vocab) + n_added);
    int64_t k = 0;
    for (const cJSON * it = vocab->child; it; it = it->next, k++) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v < 0 || v > INT32_MAX || v != (double) (int32_t) v) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: model.vocab entry %lld (\"%s\") has no valid id", path,
                             (long long) k, it->string ? it->string : "");
            goto done;
        }
        if (!wp_insert(tok, it->string, strlen(it->string), (int32_t) v)) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: model.vocab too large", path);
            goto done;
        }
    }
    if (tok->n_tokens == 0) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: empty model.vocab", path);
        goto done;
    }

    k = 0;
    for (const cJSON * it = cJSON_IsArray(added) ? added->child : NULL; it; it = it->next, k++) {
        const cJSON * content = cJSON_GetObjectItemCaseSensitive(it, "content");
        const cJSON * id      = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(content) || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: added_tokens[%lld] lacks content or id", path, (long long) k);
            goto done;
        }
        static const char * const unsupported[] = { "single_word", "lstrip", "rstrip", "normalized" };
        for (size_t u = 0; u < sizeof(unsupported) / sizeof(unsupported[0]); u++) {
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, unsupported[u]))) {
                s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: added token \"%s\" has %s true (not implemented)", path,
                                 content->valuestring, unsupported[u]);
                goto done;
            }
        }
        int32_t idv = (int32_t) id->valuedouble;
        if (!wp_insert(tok, content->valuestring, strlen(content->valuestring), idv)) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: vocabulary too large", path);
            goto done;
        }
        if ((s = wp_add_special(tok, path, content->valuestring, idv)) != RK_OK) goto done;
    }

    const cJSON * unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        int32_t id = wp_lookup(tok, unk->valuestring, strlen(unk->valuestring));
        if (id < 0) {
            s = rk_set_error(RK_STATUS_FORMAT, "%s: unk_token \"%s\" is not in the vocabulary", path, unk->valuestring);
            goto done;
        }
        tok->special.unk = id;
    }
    if (use_normalizer) s = wp_load_normalizer(tok, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));

done:
    cJSON_Delete(root);
    return s;
}

/* tokenizer_config.json: do_lower_case, strip_accents, tokenize_chinese_chars, do_basic_tokenize. */
static enum rk_status wp_load_config(struct rk_wordpiece * tok, const char * path, const char * data, size_t len) {
    cJSON * root;
    RK_TRY(wp_parse_json(path, data, len, &root));
    enum rk_status s = RK_OK;
    bool strip_null = true, strip = false, basic = true;
    if (!cJSON_IsObject(root)) {
        s = rk_set_error(RK_STATUS_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    if ((s = wp_json_bool(path, root, "do_lower_case", &tok->lowercase, NULL)) != RK_OK) goto done;
    if ((s = wp_json_bool(path, root, "tokenize_chinese_chars", &tok->chinese_chars, NULL)) != RK_OK) goto done;
    if ((s = wp_json_bool(path, root, "strip_accents", &strip, &strip_null)) != RK_OK) goto done;
    if ((s = wp_json_bool(path, root, "do_basic_tokenize", &basic, NULL)) != RK_OK) goto done;
    if (!basic) {
        s = rk_set_error(RK_STATUS_UNSUPPORTED, "%s: do_basic_tokenize false is not implemented", path);
        goto done;
    }
    /* HF: strip_accents null follows do_lower_case (the original BERT) */
    tok->strip_accents = strip_null ? tok->lowercase : strip;
done:
    cJSON_Delete(root);
    return s;
}

static enum rk_status wp_load(struct rk_wordpiece * tok, const char * dir) {
    char path[4096];
    struct stat st;
    if (stat(dir, &st) != 0) {
        return rk_set_error(RK_STATUS_IO, "%s: cannot open model directory: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return rk_set_error(RK_STATUS_IO, "%s: model path is not a directory", dir);

    /* tokenizer_config.json first: whether it exists decides where the normalizer options come from */
    char * cfg     = NULL;
    size_t cfg_len = 0;
    bool   cfg_missing;
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    enum rk_status s = wp_read_file(path, &cfg, &cfg_len, &cfg_missing);
    if (s != RK_OK && !cfg_missing) return s;
    if (s == RK_OK) {
        s = wp_load_config(tok, path, cfg, cfg_len);
        free(cfg);
        RK_TRY(s);
    }
    rk_clear_error();

    char vocab_path[4096];
    snprintf(vocab_path, sizeof(vocab_path), "%s/vocab.txt", dir);
    FILE * f         = fopen(vocab_path, "rb");
    bool   has_vocab = f != NULL;
    if (has_vocab) {
        fclose(f);
        RK_TRY(wp_load_vocab_txt(tok, vocab_path));
        /* as HF: the special tokens are never split, also when they appear in the text */
        static const char * const names[] = { "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            int32_t id = wp_lookup(tok, names[i], strlen(names[i]));
            if (id >= 0) RK_TRY(wp_add_special(tok, vocab_path, names[i], id));
        }
    } else if (errno != ENOENT) {
        return rk_set_error(RK_STATUS_IO, "%s: cannot open for reading: %s", vocab_path, strerror(errno));
    } else {
        snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
        bool missing;
        char * probe_data;
        size_t probe_len;
        s = wp_read_file(path, &probe_data, &probe_len, &missing);
        if (s != RK_OK && missing) {
            return rk_set_error(RK_STATUS_IO, "%s: neither vocab.txt nor tokenizer.json found (HINT: run `make models`)",
                                dir);
        }
        RK_TRY(s);
        free(probe_data);
        RK_TRY(wp_load_tokenizer_json(tok, path, cfg_missing));
    }
    const char * where = has_vocab ? vocab_path : path;

    struct rk_wordpiece_special * sp = &tok->special;
    int32_t unk_from_model = sp->unk;
    sp->cls  = rk_wordpiece_token_id(tok, "[CLS]");
    sp->sep  = rk_wordpiece_token_id(tok, "[SEP]");
    sp->pad  = rk_wordpiece_token_id(tok, "[PAD]");
    sp->mask = rk_wordpiece_token_id(tok, "[MASK]");
    sp->unk  = unk_from_model >= 0 ? unk_from_model : rk_wordpiece_token_id(tok, "[UNK]");
    static const char * const required[] = { "[CLS]", "[SEP]", "[PAD]", "[UNK]" };
    const int32_t ids[] = { sp->cls, sp->sep, sp->pad, sp->unk };
    for (int i = 0; i < 4; i++) {
        if (ids[i] < 0) return rk_set_error(RK_STATUS_FORMAT, "%s: no %s token in the vocabulary", where, required[i]);
    }
    return RK_OK;
}

enum rk_status rk_wordpiece_load(const char * model_dir, struct rk_wordpiece ** out) {
    RK_ASSERT(model_dir != NULL && out != NULL);
    *out = NULL;
    struct rk_wordpiece * tok = rk_xcalloc(1, sizeof(*tok));
    tok->lowercase     = true;
    tok->strip_accents = true;
    tok->chinese_chars = true;
    memcpy(tok->prefix, "##", 3);
    tok->prefix_len  = 2;
    tok->max_chars   = 100;
    tok->special.unk = -1;
    for (int c = 0; c < 128; c++) tok->ascii_class[c] = (uint8_t) wp_ascii_class((unsigned char) c);
    enum rk_status s = wp_load(tok, model_dir);
    if (s != RK_OK) {
        rk_wordpiece_free(tok);
        return s;
    }
    *out = tok;
    return RK_OK;
}

void rk_wordpiece_free(struct rk_wordpiece * tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_specials; i++) free(tok->specials[i].text);
    free(tok->arena);
    free(tok->table);
    free(tok);
}

int32_t rk_wordpiece_token_id(const struct rk_wordpiece * tok, const char * token) {
    RK_ASSERT(tok != NULL && token != NULL);
    return wp_lookup(tok, token, strlen(token));
}

int64_t rk_wordpiece_vocab_size(const struct rk_wordpiece * tok) {
    RK_ASSERT(tok != NULL);
    return tok->vocab_size;
}

const struct rk_wordpiece_special * rk_wordpiece_special(const struct rk_wordpiece * tok) {
    RK_ASSERT(tok != NULL);
    return &tok->special;
}
