/*
 * test_wgmma.c: the device self-test of the Hopper warpgroup-MMA primitives (kernels/wgmma_check.cu) as the
 * attention kernel's wgmma variants (6, 7, 8) use them: every combo (wgmma SS at N = 64, 128 and 256, the last
 * for the GEMM of kernels/matmul_gelu.cu, RS at N = 64 and 128, bf16 and f16, scale-d 0 and 1, and the attention
 * chain S = Q K^T, P = 16-bit(S), O = P V at each variant's tile shape, and "tma-pipe": TMA loads completing on
 * mbarriers, a producer warpgroup and two consumer warpgroups with setmaxnreg, kernels/tma.cuh) is one case
 * "WGMMA(combo=<name>)", printed
 * with its result and selected with RK_TEST_FILTER, e.g.
 *     RK_TEST_FILTER='combo=rs|chain-v8' build/tests/test_wgmma
 * A failing case prints the first mismatch (matrix, row, col, got, want, and which warpgroup / warp / g / tig
 * holds it). Run this first on a new H100/H200 when the attention parity tests fail there: the failing combos name
 * the layout the hardware reads differently.
 *
 * Each combo runs in a child process of its own (fork, before CUDA is initialised in that child), so a combo that
 * faults on the device (an illegal instruction, a misaligned shared access: the CUDA context is lost and
 * RK_CUDA_CHECK aborts) is reported as that combo's failure and the others still run. RK_WGMMA_NO_FORK=1 runs them
 * in this process instead (for a debugger or compute-sanitizer). Without a CUDA device, or on a device that is
 * not compute capability 9.0, every combo is unsupported and the test is skipped. The emulator runs it as well
 * (tests/emu/run_suites.sh; build-emu/tests/test_wgmma).
 *
 * cuda_wgmma/detects_defects proves that the check can fail: a few combos run with a deliberate layout defect
 * (SBO 512, an RS k-step of 8 keys, half the RS panel stride, two A fragment registers swapped, a TMA box 8 columns
 * off) and each must be
 * reported as a mismatch (or die on the device).
 */
#include "ops_harness.h"

#ifdef RK_HAVE_CUDA
#include "kernels/wgmma_check.h"

#include <sys/wait.h>
#include <unistd.h>

/* What one combo gave: its status and message, or that the process running it died. */
struct wgc_result {
    enum rk_status status;
    int            died;      /* the child ended without reporting: killed by a signal, or a non-zero exit */
    int            wstatus;   /* its waitpid status when it died */
    char           msg[1024];
};

static bool wgc_no_fork(void) {
    const char * e = getenv("RK_WGMMA_NO_FORK");
    return e && *e && strcmp(e, "0") != 0;
}

/* Runs (combo, defect) in a child process (or here, with RK_WGMMA_NO_FORK=1). */
static struct wgc_result wgc_run_combo(int combo, int defect) {
    struct wgc_result res;
    memset(&res, 0, sizeof(res));
    if (wgc_no_fork()) {
        res.status = rk_cuda_wgmma_check_defect(combo, defect, res.msg, sizeof(res.msg));
        return res;
    }
    fflush(stdout);
    fflush(stderr);
    int p[2];
    cr_assert(pipe(p) == 0, "pipe failed");
    const pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) { /* the child: CUDA starts here; report through the pipe and leave without Criterion's hooks */
        close(p[0]);
        struct wgc_result r;
        memset(&r, 0, sizeof(r));
        r.status      = rk_cuda_wgmma_check_defect(combo, defect, r.msg, sizeof(r.msg));
        const char * b = (const char *) &r;
        size_t       n = sizeof(r);
        while (n > 0) {
            const ssize_t w = write(p[1], b, n);
            if (w <= 0) _exit(3);
            b += w;
            n -= (size_t) w;
        }
        _exit(0);
    }
    close(p[1]);
    size_t got = 0;
    char * b   = (char *) &res;
    while (got < sizeof(res)) {
        const ssize_t r = read(p[0], b + got, sizeof(res) - got);
        if (r <= 0) break;
        got += (size_t) r;
    }
    close(p[0]);
    int st = 0;
    cr_assert(waitpid(pid, &st, 0) == pid, "waitpid failed");
    if (got != sizeof(res) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        memset(&res, 0, sizeof(res));
        res.died    = 1;
        res.wstatus = st;
        if (WIFSIGNALED(st)) {
            snprintf(res.msg, sizeof(res.msg), "the process running it died of signal %d (%s; the CUDA error, if any, "
                     "is printed above)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        } else {
            snprintf(res.msg, sizeof(res.msg), "the process running it exited with status %d without a result",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
    }
    return res;
}

Test(cuda_wgmma, primitives) {
    struct tally t = { 0 };
    const int    n = rk_cuda_wgmma_check_count();
    for (int i = 0; i < n; i++) {
        char cs[256];
        snprintf(cs, sizeof(cs), "WGMMA(combo=%s)", rk_cuda_wgmma_check_name(i));
        if (!case_selected(cs)) continue;
        const double            t0 = now_ms();
        const struct wgc_result r  = wgc_run_combo(i, RK_WGMMA_DEFECT_NONE);
        int                     rc = CASE_PASS;
        if (r.died || (r.status != RK_OK && r.status != RK_STATUS_UNSUPPORTED)) {
            fprintf(stderr, "    %s: %s\n", cs, r.msg);
            rc = CASE_FAIL;
        } else if (r.status == RK_STATUS_UNSUPPORTED) {
            /* no device, or not sm_90: every combo is unsupported, so skip the test as cuda_or_skip does */
            if (t.pass == 0 && t.fail == 0) cr_skip_test("wgmma check: %s", r.msg);
            fprintf(stderr, "    %s: unsupported: %s\n", cs, r.msg);
            rc = CASE_SKIP;
        }
        tally_add(&t, cs, rc, t0);
    }
    fprintf(stderr, "WGMMA: %d passed, %d failed, %d skipped as unsupported\n", t.pass, t.fail, t.skip);
    cr_assert(t.fail == 0, "WGMMA: %d combo(s) failed (see the lines above)", t.fail);
}

/* Each defect must be caught: a mismatch, or the device dying on it. */
Test(cuda_wgmma, detects_defects) {
    static const struct {
        const char * combo;
        int          defect;
    } cases[] = {
        { "ss,N=64,K=128,bf16,scale_d=0", RK_WGMMA_DEFECT_SBO },
        { "rs,N=128,K=128,f16,scale_d=1", RK_WGMMA_DEFECT_RS_KSTEP },
        { "rs,N=128,K=128,bf16,scale_d=0", RK_WGMMA_DEFECT_RS_LBO },
        { "rs,N=64,K=128,bf16,scale_d=1", RK_WGMMA_DEFECT_PACK },
        { "chain-v6,HS=128,BN=64,f16", RK_WGMMA_DEFECT_PACK },
        { "tma-pipe,N=128,K=320,bf16", RK_WGMMA_DEFECT_TMA_COORD },
    };
    struct tally t = { 0 };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int combo = -1;
        for (int i = 0; i < rk_cuda_wgmma_check_count(); i++) {
            if (strcmp(rk_cuda_wgmma_check_name(i), cases[c].combo) == 0) combo = i;
        }
        cr_assert(combo >= 0, "no combo %s", cases[c].combo);
        char cs[256];
        snprintf(cs, sizeof(cs), "WGMMA(combo=%s,defect=%s)", cases[c].combo, rk_cuda_wgmma_defect_name(cases[c].defect));
        if (!case_selected(cs)) continue;
        const double            t0 = now_ms();
        const struct wgc_result r  = wgc_run_combo(combo, cases[c].defect);
        int                     rc = CASE_PASS;
        if (r.status == RK_STATUS_UNSUPPORTED && !r.died) {
            if (t.pass == 0 && t.fail == 0) cr_skip_test("wgmma check: %s", r.msg);
            fprintf(stderr, "    %s: unsupported: %s\n", cs, r.msg);
            rc = CASE_SKIP;
        } else if (r.died || r.status == RK_STATUS_DEVICE) {
            fprintf(stderr, "    %s: detected: %s\n", cs, r.msg);
        } else {
            fprintf(stderr, "    %s: NOT detected (%s): %s\n", cs, rk_status_name(r.status), r.msg);
            rc = CASE_FAIL;
        }
        tally_add(&t, cs, rc, t0);
    }
    fprintf(stderr, "WGMMA defects: %d detected, %d missed, %d skipped as unsupported\n", t.pass, t.fail, t.skip);
    cr_assert(t.fail == 0, "WGMMA: %d deliberate defect(s) went unnoticed: the check cannot fail", t.fail);
}

#else

Test(cuda_wgmma, primitives) { cr_skip_test("no CUDA in this build"); }

#endif
