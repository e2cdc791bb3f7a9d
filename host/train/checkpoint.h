/*
 * checkpoint.h: training checkpoints, saved and restored as a whole.
 *
 * A checkpoint is a folder:
 *     model.safetensors      model weights under their Hugging Face names, in the dtype of the caller's buffers
 *                            (metadata {"format": "pt"}, so transformers/PEFT load it)
 *     optimizer.safetensors  optimizer state; for AdamW, per parameter "<name>.exp_avg" and "<name>.exp_avg_sq"
 *                            (f32), plus the f32 master weights "<name>.master" when the model is stored in 16 bits
 *                            (names from rk_checkpoint_optim_name)
 *     trainer_state.json     the caller's JSON (see struct rk_trainer_state for the usual fields)
 *
 * Saving is atomic for the folder as a whole. The files are written and fsync'd in "<dir>.tmp.<pid>/"; then
 *     1. an existing <dir> is renamed to "<dir>.old.<pid>",
 *     2. "<dir>.tmp.<pid>" is renamed to <dir>,
 *     3. "<dir>.old.<pid>" is removed (with any older "<dir>.old.*" and "<dir>.tmp.<pid>" of dead processes).
 * Linux cannot rename a folder over a non-empty one, hence the two renames. Crash windows:
 *     - before 1: <dir> is the old checkpoint, untouched; a stale "<dir>.tmp.<pid>" may be left over.
 *     - between 1 and 2: <dir> is missing, "<dir>.old.<pid>" holds the complete old checkpoint.
 *       rk_checkpoint_load falls back to it (the newest "<dir>.old.*" by modification time).
 *     - after 2: <dir> is the complete new checkpoint; a stale "<dir>.old.<pid>" may remain.
 * Leftovers are removed by the next successful save. Two processes saving to the same <dir> at once are not
 * supported.
 */
#ifndef RK_TRAIN_CHECKPOINT_H
#define RK_TRAIN_CHECKPOINT_H

#include "io/safetensors_write.h"
#include "rk.h"

#include <cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RK_CKPT_MODEL_FILE "model.safetensors"
#define RK_CKPT_OPTIM_FILE "optimizer.safetensors"
#define RK_CKPT_STATE_FILE "trainer_state.json"

/* Optimizer slot suffixes (AdamW). */
#define RK_CKPT_EXP_AVG    "exp_avg"
#define RK_CKPT_EXP_AVG_SQ "exp_avg_sq"
#define RK_CKPT_MASTER     "master"

/* Writes "<param>.<slot>" into buf (n bytes) and returns buf. Cannot fail (truncates). */
const char * rk_checkpoint_optim_name(char * buf, size_t n, const char * param, const char * slot);

/*
 * Saves a checkpoint folder atomically (see the file comment). model and optim are n_model and n_optim named host
 * buffers (optim may be NULL with n_optim 0: an empty optimizer.safetensors is still written); state is any JSON
 * value (NULL writes {}). The parent folder of dir must exist.
 * Returns RK_STATUS_ARG for a bad buffer (naming it), RK_STATUS_IO naming the path that could not be written; on
 * failure the previous checkpoint in dir is intact and the temporary folder removed.
 */
enum rk_status rk_checkpoint_save(const char * dir, const struct rk_named_buffer * model, int64_t n_model,
                                  const struct rk_named_buffer * optim, int64_t n_optim, const cJSON * state);

/*
 * Loads a checkpoint folder into caller memory. Each buffer is looked up by name in the matching file and must
 * have the same shape; the data is copied, or converted when both dtypes are among F32, F16 and BF16 (so an f32
 * buffer loads a bf16 model file). Tensors in the files that no buffer asks for are ignored. When dir is missing,
 * the newest "<dir>.old.*" left by an interrupted save is used instead.
 * On success *state (may be NULL to skip) is the parsed trainer_state.json, freed by the caller with cJSON_Delete.
 * Failures: RK_STATUS_IO (no checkpoint / a missing file, naming it), RK_STATUS_FORMAT naming the file and tensor
 * (a tensor missing, a shape or dtype mismatch, malformed file). On failure *state is NULL; buffers may have been
 * partly filled.
 */
enum rk_status rk_checkpoint_load(const char * dir, const struct rk_named_buffer * model, int64_t n_model,
                                  const struct rk_named_buffer * optim, int64_t n_optim, cJSON ** state);

/*
 * The folder rk_checkpoint_load reads for dir: dir itself when it exists, else the newest "<dir>.old.*", written
 * into buf (n bytes). RK_STATUS_IO "<dir>: no checkpoint ..." when neither exists.
 */
enum rk_status rk_checkpoint_resolve(const char * dir, char * buf, size_t n);

/* ---- trainer_state.json ----------------------------------------------------------------------------------- */

/* The usual trainer state. 64-bit counters that a JSON double cannot hold exactly are written as decimal strings. */
struct rk_trainer_state {
    int64_t  step;               /* optimizer steps done, e.g. 1200 */
    int64_t  epoch;              /* completed epochs, e.g. 2 */
    uint64_t rng_seed;           /* the run's seed, e.g. 42 */
    uint64_t rng_offset;         /* random draws consumed so far (to fast-forward the generator) */
    int64_t  sched_step;         /* learning-rate scheduler step */
    double   loss_scale;         /* dynamic loss scaler: current scale, e.g. 65536 (1 when unused) */
    int64_t  loss_scale_good;    /* steps since the scale last changed */
    double   best_metric;        /* best validation metric so far; NaN when none (written as null) */
    int64_t  best_step;          /* step of best_metric; -1 when none */
};

/*
 * The state as a JSON object, with config (the run's settings: lr, batch size, ...; may be NULL) copied in under
 * "config". Cannot fail (aborts on out of memory); free with cJSON_Delete.
 */
cJSON * rk_trainer_state_to_json(const struct rk_trainer_state * ts, const cJSON * config);

/*
 * Reads the fields back from j. what names the source in messages (e.g. the file path). A missing or mistyped
 * field is RK_STATUS_FORMAT "<what>: \"<field>\" ...". *config (may be NULL) points into j (not a copy).
 */
enum rk_status rk_trainer_state_from_json(const cJSON * j, const char * what, struct rk_trainer_state * ts,
                                          const cJSON ** config);

#ifdef __cplusplus
}
#endif
#endif
