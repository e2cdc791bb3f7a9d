/*
 * wordpiece.h: the BERT WordPiece tokenizer (encode only), equal to Hugging Face's BertTokenizerFast, which is
 * tokenizers' BertNormalizer + BertPreTokenizer + WordPiece + the "[CLS] A [SEP]" template.
 *
 * Pipeline for one text (tests/golden/gen_tokenizer.py holds the reference it is checked against):
 *   1. special tokens ("[CLS]", "[SEP]", ... and tokenizer.json added tokens) are matched on the raw text and
 *      never split or normalized;
 *   2. normalization: drop NUL, U+FFFD and control/format/private-use chars (\t \n \r count as whitespace),
 *      whitespace -> ' ', CJK ideographs padded with spaces, NFD + removal of nonspacing marks (Mn) when
 *      stripping accents, lower-casing;
 *   3. pre-tokenization: split on whitespace, every punctuation char is a word of its own;
 *   4. WordPiece: greedy longest-match-first with the "##" continuation prefix; a word longer than
 *      max_input_chars_per_word (100) chars, or one that cannot be covered by vocabulary pieces, is one [UNK].
 *
 * Input text is UTF-8 and NUL-terminated (so a U+0000 ends the text, where HF would drop it); bytes that are not
 * valid UTF-8 are dropped, as HF drops the U+FFFD a lossy decode would put there.
 */
#ifndef RK_WORDPIECE_H
#define RK_WORDPIECE_H

#include "rk.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rk_wordpiece; /* opaque; immutable after load, so it can be shared between threads */

/* Ids of the special tokens, looked up by their usual names ("[CLS]", ...); -1 where the vocabulary lacks one
 * (only mask may be -1: load fails without the others). */
struct rk_wordpiece_special {
    int32_t cls;  /* "[CLS]", e.g. 101 */
    int32_t sep;  /* "[SEP]", e.g. 102 */
    int32_t pad;  /* "[PAD]", e.g. 0   */
    int32_t unk;  /* "[UNK]", e.g. 100 */
    int32_t mask; /* "[MASK]", e.g. 103 */
};

/*
 * Loads the tokenizer of a model directory: the vocabulary from vocab.txt (one token per line, id = line
 * number) if present, else from tokenizer.json (model.vocab, plus model.unk_token / continuing_subword_prefix /
 * max_input_chars_per_word and the added tokens). Options come from tokenizer_config.json when present
 * (do_lower_case, strip_accents, tokenize_chinese_chars), else from tokenizer.json's BertNormalizer, else the
 * defaults: lower-case on, accents stripped when lower-casing (strip_accents null, as in HF), CJK padding on.
 * On success *out owns the tokenizer (free with rk_wordpiece_free) and RK_OK is returned. On failure *out is
 * NULL and the one-line error names the file (and line or position): RK_STATUS_IO when the directory or both
 * vocabulary files are missing or unreadable, RK_STATUS_FORMAT for malformed content (bad JSON, empty
 * vocabulary, missing [CLS]/[SEP]/[PAD]/[UNK]), RK_STATUS_UNSUPPORTED for options this tokenizer does not
 * implement (a model type other than WordPiece, do_basic_tokenize false, added tokens with lstrip/rstrip/
 * single_word/normalized set).
 */
enum rk_status rk_wordpiece_load(const char * model_dir, struct rk_wordpiece ** out);

/* Frees a tokenizer from rk_wordpiece_load; NULL is fine. */
void rk_wordpiece_free(struct rk_wordpiece * tok);

/* Id of an exact vocabulary token ("##ing", "[CLS]"), or -1 when absent. Thread-safe; cannot fail. */
int32_t rk_wordpiece_token_id(const struct rk_wordpiece * tok, const char * token);

/* Size of the id space, max id + 1 (30522 for bert-base-uncased); the embedding table has this many rows.
 * Cannot fail. */
int64_t rk_wordpiece_vocab_size(const struct rk_wordpiece * tok);

/* The special ids; the pointer lives as long as tok. Cannot fail. */
const struct rk_wordpiece_special * rk_wordpiece_special(const struct rk_wordpiece * tok);

/*
 * Encodes one text as [CLS] tokens [SEP], keeping the first max_len - 2 tokens when it is longer (HF
 * truncation=True, max_length=max_len). ids has room for max_len entries (max_len >= 2, asserted). Returns the
 * number of ids written (2..max_len). Pure function of its arguments, thread-safe, allocates nothing unless
 * max_input_chars_per_word exceeds 256; cannot fail.
 */
int64_t rk_wordpiece_encode(const struct rk_wordpiece * tok, const char * text, int32_t * ids, int64_t max_len);

/*
 * Encodes n texts into row-major (n, T) arrays: ids, mask (1 on real tokens, 0 on padding) and type_ids (all 0),
 * where T = min(max_len, longest encoded length) when pad_to_longest, else T = max_len. Rows are padded with the
 * [PAD] id. Each array needs room for n * max_len entries (only n * T are written); mask, type_ids and lengths
 * may be NULL. lengths[i] receives the unpadded length of row i. Texts are encoded in parallel (OpenMP).
 * Returns T (0 when n is 0 and pad_to_longest). Cannot fail (asserts max_len >= 2, n >= 0).
 */
int64_t rk_wordpiece_encode_batch(const struct rk_wordpiece * tok, const char * const * texts, int64_t n,
                                  int64_t max_len, bool pad_to_longest, int32_t * ids, int32_t * mask,
                                  int32_t * type_ids, int64_t * lengths);

#ifdef __cplusplus
}
#endif
#endif
