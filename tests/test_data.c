/*
 * test_data.c: the CSV reader, the data set loader and the split (datasets/).
 *
 * Fixtures are written into a fresh rk_test_tmpdir() per test. The Reuters-21578 tests read the stored
 * training file, $RK_DATASETS/reuters21578/train.csv.gz, with RK_DATASETS defaulting to
 * $RK_ROOT/../shared/datasets; a missing file is a failure, not a skip. The scikit-multilearn comparison
 * reads tests/golden/split_reuters_skml.txt, written by tests/golden/gen_split.py.
 */
#include "datasets/csv.h"
#include "datasets/dataset.h"
#include "datasets/split.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static const char * reuters_path(void) { return rk_test_reuters_path(); }

static const char * write_text(char * buf, size_t n, const char * dir, const char * name, const char * text) {
    return rk_test_write_file(buf, n, dir, name, text, strlen(text));
}

/* Asserts status s and that the message contains the file's base name and every given fragment. */
static void expect_error(enum rk_status got, enum rk_status want, const char * path, const char * frag1,
                         const char * frag2) {
    const char * msg = rk_last_error();
    cr_assert_eq(got, want, "status %s (want %s), message: %s", rk_status_name(got), rk_status_name(want), msg);
    const char * base = strrchr(path, '/');
    base              = base ? base + 1 : path;
    cr_assert(strstr(msg, base) != NULL, "message lacks the file name %s: %s", base, msg);
    if (frag1) cr_assert(strstr(msg, frag1) != NULL, "message lacks '%s': %s", frag1, msg);
    if (frag2) cr_assert(strstr(msg, frag2) != NULL, "message lacks '%s': %s", frag2, msg);
}

static bool starts_with(const char * s, const char * prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

static int64_t count_dir_entries(const char * dir) {
    DIR * d = opendir(dir);
    cr_assert(d != NULL);
    int64_t          n = 0;
    struct dirent * e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    }
    closedir(d);
    return n;
}

static char * read_whole(const char * path) {
    FILE * f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char * s = malloc((size_t) n + 1);
    cr_assert(fread(s, 1, (size_t) n, f) == (size_t) n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* ---- CSV reader ------------------------------------------------------------------------------- */

/* The quoting cases of RFC 4180, with a BOM, CRLF endings and no final newline. */
static const char quoting_csv[] =
    "\xef\xbb\xbf"
    "id,text,n\r\n"
    "1,plain,10\r\n"
    "2,\"with, comma\",20\r\n"
    "3,\"say \"\"hi\"\"\",30\r\n"
    "4,\"two\nlines\",40\r\n"
    "5,\"crlf\r\ninside\",50\r\n"
    "6,,60\r\n"
    "7,\"\",70\r\n"
    "8,\"\"\"\",80\r\n"
    "9,5\" floppy,90\r\n"
    "10,last,100";

static const char * const quoting_want[][3] = {
    {"1", "plain", "10"},         {"2", "with, comma", "20"}, {"3", "say \"hi\"", "30"},
    {"4", "two\nlines", "40"},    {"5", "crlf\r\ninside", "50"}, {"6", "", "60"},
    {"7", "", "70"},              {"8", "\"", "80"},          {"9", "5\" floppy", "90"},
    {"10", "last", "100"},
};
static const int64_t quoting_lines[] = {2, 3, 4, 5, 7, 9, 10, 11, 12, 13};

static void check_quoting_file(const char * path) {
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK, "%s", rk_last_error());
    const struct rk_csv_row * h = rk_csv_header(c);
    cr_assert_eq(h->n_fields, 3);
    cr_assert_str_eq(h->fields[0], "id", "BOM not skipped: '%s'", h->fields[0]);
    cr_assert_str_eq(h->fields[2], "n");
    cr_assert_eq(h->line, 1);
    cr_assert_eq(rk_csv_find_column(h, "TEXT"), 1);
    cr_assert_eq(rk_csv_find_column(h, "nope"), -1);
    size_t n_want = sizeof(quoting_want) / sizeof(quoting_want[0]);
    for (size_t r = 0; r < n_want; r++) {
        const struct rk_csv_row * row = NULL;
        cr_assert_eq(rk_csv_next(c, &row), RK_OK, "%s", rk_last_error());
        cr_assert(row != NULL, "row %zu missing", r);
        cr_assert_eq(row->n_fields, 3);
        for (int k = 0; k < 3; k++) {
            cr_assert_str_eq(row->fields[k], quoting_want[r][k], "row %zu field %d", r, k);
            cr_assert_eq(row->lens[k], strlen(quoting_want[r][k]));
        }
        cr_assert_eq(row->line, quoting_lines[r], "row %zu starts on line %lld, want %lld", r, (long long) row->line,
                     (long long) quoting_lines[r]);
    }
    const struct rk_csv_row * row = (const struct rk_csv_row *) 1;
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_null(row);
    cr_assert_eq(rk_csv_next(c, &row), RK_OK); /* stays at the end */
    cr_assert_null(row);
    rk_csv_close(c);
}

Test(csv, quoting_plain) {
    char path[512];
    rk_test_write_file(path, sizeof(path), rk_test_tmpdir(), "q.csv", quoting_csv, sizeof(quoting_csv) - 1);
    check_quoting_file(path);
}

Test(csv, quoting_gzip) {
    char path[512];
    snprintf(path, sizeof(path), "%s/q.csv.gz", rk_test_tmpdir());
    gzFile gz = gzopen(path, "wb");
    cr_assert(gz != NULL);
    cr_assert_eq(gzwrite(gz, quoting_csv, sizeof(quoting_csv) - 1), (int) sizeof(quoting_csv) - 1);
    cr_assert_eq(gzclose(gz), Z_OK);
    /* really compressed: the gzip magic */
    FILE * f = fopen(path, "rb");
    unsigned char magic[2];
    cr_assert(fread(magic, 1, 2, f) == 2);
    fclose(f);
    cr_assert(magic[0] == 0x1f && magic[1] == 0x8b);
    check_quoting_file(path);
}

Test(csv, lf_and_blank_lines) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "lf.csv", "a,b\n\n1,2\n\n\n3,\"x\ny\"\n4,5\n\n");
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK, "%s", rk_last_error());
    const struct rk_csv_row * row = NULL;
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_str_eq(row->fields[0], "1");
    cr_assert_eq(row->line, 3);
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_str_eq(row->fields[1], "x\ny");
    cr_assert_eq(row->line, 6);
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_str_eq(row->fields[0], "4");
    cr_assert_eq(row->line, 8);
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_null(row);
    rk_csv_close(c);
}

Test(csv, lone_cr_line_endings) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "cr.csv", "a,b\r1,\"x\ry\"\r2,3");
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK, "%s", rk_last_error());
    cr_assert_str_eq(rk_csv_header(c)->fields[1], "b");
    const struct rk_csv_row * row = NULL;
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_str_eq(row->fields[1], "x\ry");
    cr_assert_eq(row->line, 2);
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    cr_assert_str_eq(row->fields[0], "2");
    cr_assert_eq(row->line, 4);
    rk_csv_close(c);
}

/* A gzip stream cut short is a read error, not a silently shorter file. */
Test(csv, truncated_gzip) {
    char         path[512];
    const char * dir = rk_test_tmpdir();
    snprintf(path, sizeof(path), "%s/cut.csv.gz", dir);
    gzFile gz = gzopen(path, "wb");
    gzputs(gz, "a,b\n");
    for (int i = 0; i < 20000; i++) gzprintf(gz, "%d,row number %d with some text\n", i, i * 7919);
    gzclose(gz);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK, "%s", rk_last_error());
    enum rk_status            s   = RK_OK;
    const struct rk_csv_row * row = NULL;
    int64_t                   n   = 0;
    for (;;) {
        s = rk_csv_next(c, &row);
        if (s != RK_OK || !row) break;
        n++;
    }
    cr_assert(n < 20000);
    expect_error(s, RK_STATUS_IO, path, "read error", NULL);
    rk_csv_close(c);
}

Test(csv, field_count_names_line) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "bad.csv", "a,b,c\n1,\"x\ny\",3\n4,5\n");
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK);
    const struct rk_csv_row * row = NULL;
    cr_assert_eq(rk_csv_next(c, &row), RK_OK);
    enum rk_status s = rk_csv_next(c, &row);
    expect_error(s, RK_STATUS_FORMAT, path, "line 4: row has 2 fields, header has 3", NULL);
    cr_assert_null(row);
    rk_csv_close(c);
}

Test(csv, junk_after_closing_quote) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "junk.csv", "a,b\n1,\"x\"y\n");
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK);
    const struct rk_csv_row * row = NULL;
    expect_error(rk_csv_next(c, &row), RK_STATUS_FORMAT, path, "line 2", "after the closing quote");
    rk_csv_close(c);
}

Test(csv, write_field_round_trip) {
    char path[512];
    snprintf(path, sizeof(path), "%s/w.csv", rk_test_tmpdir());
    const char * vals[] = {"plain", "a,b", "q\"q", "nl\nx", "", "cr\rx"};
    FILE * f = fopen(path, "wb");
    fputs("v,end\n", f);
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        cr_assert_eq(rk_csv_write_field(f, vals[i]), 0);
        fputs(",e\n", f);
    }
    fclose(f);
    struct rk_csv * c = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK);
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        const struct rk_csv_row * row = NULL;
        cr_assert_eq(rk_csv_next(c, &row), RK_OK, "%s", rk_last_error());
        cr_assert_str_eq(row->fields[0], vals[i]);
        cr_assert_str_eq(row->fields[1], "e");
    }
    rk_csv_close(c);
}

/* A ~30 MB arXiv-shaped file (quoted multi-line abstracts) must parse in well under a second; the bound
 * here is loose so that a loaded machine does not fail it, and catches only gross slowdowns. */
Test(csv, speed_30mb, .timeout = 60) {
    char path[512];
    snprintf(path, sizeof(path), "%s/big.csv", rk_test_tmpdir());
    FILE * f = fopen(path, "wb");
    cr_assert(f != NULL);
    fputs("ID,TITLE,ABSTRACT,Computer Science,Physics,Mathematics,Statistics,Quantitative Biology,"
          "Quantitative Finance\n", f);
    int64_t n_rows = 0;
    for (; ftell(f) < 30 * 1000 * 1000; n_rows++) {
        fprintf(f, "%lld,\"On the convergence of method %lld, revisited\",\"  We study the \"\"rate\"\" of "
                "convergence of stochastic gradient descent\nfor non-convex objectives, and prove bounds that "
                "match the lower bounds\nup to log factors. Experiments on %lld benchmarks confirm the theory, "
                "and an ablation shows which assumptions matter in practice.\n\",1,0,%d,1,0,0\n",
                (long long) n_rows + 1, (long long) n_rows, (long long) n_rows % 97, (int) (n_rows % 2));
    }
    fclose(f);
    double          t0 = now_s();
    struct rk_csv * c  = NULL;
    cr_assert_eq(rk_csv_open(path, &c), RK_OK);
    int64_t                   n   = 0;
    const struct rk_csv_row * row = NULL;
    for (;;) {
        cr_assert_eq(rk_csv_next(c, &row), RK_OK, "%s", rk_last_error());
        if (!row) break;
        n++;
    }
    rk_csv_close(c);
    double dt = now_s() - t0;
    cr_log_info("csv: %lld rows (30 MB) parsed in %.3f s", (long long) n, dt);
    cr_assert_eq(n, n_rows);
    cr_assert(dt < 3.0, "30 MB took %.3f s", dt);

    t0                     = now_s();
    struct rk_dataset * d  = NULL;
    cr_assert_eq(rk_dataset_load(path, NULL, &d), RK_OK, "%s", rk_last_error());
    dt = now_s() - t0;
    cr_log_info("dataset: %lld docs (30 MB) loaded in %.3f s", (long long) d->n_docs, dt);
    cr_assert_eq(d->n_docs, n_rows);
    cr_assert(dt < 5.0, "loading 30 MB took %.3f s", dt);
    rk_dataset_free(d);
    unlink(path); /* do not leave 30 MB in /tmp */
}

/* ---- data set: arXiv schema ------------------------------------------------------------------- */

/* 40 rows in the arXiv topic-classification schema; labels are CS, Physics, Math, Stats, QBio, QFin. */
struct arxiv_row {
    const char * title;
    const char * abstract;
    const char * labels; /* six '0'/'1' */
};

static const struct arxiv_row arxiv_rows[] = {
    {"Reconstructing Subject-Specific Effect Maps",
     "  Predictive models allow subject-specific inference when analyzing disease\nrelated alterations in "
     "neuroimaging data. Given a subject's data, inference can\nbe made at two levels: global, i.e. identifiying "
     "condition presence for the\nsubject, and local, i.e. detecting condition effect on each individual "
     "measurement.\n",
     "100000"},
    {"Rotation Invariance Neural Network",
     "  Rotation invariance and translation invariance have great values in image\nrecognition tasks. In this "
     "paper, we bring a new architecture in convolutional\nneural network (CNN) named cyclic convolutional layer "
     "to achieve rotation\ninvariance in 2-D symbol recognition.\n",
     "100000"},
    {"Spherical polyharmonics and Poisson kernels for polyharmonic functions",
     "  We introduce and develop the notion of spherical polyharmonics, which are a\nnatural generalisation of "
     "spherical harmonics. In particular we study the\ntheory of zonal polyharmonics, which allows us, "
     "analogously to zonal harmonics,\nto construct Poisson kernels for polyharmonic functions on the union of\n"
     "rotated balls.\n",
     "001000"},
    {"A finite element approximation for the stochastic Maxwell--Landau--Lifshitz--Gilbert system",
     "  The stochastic Landau--Lifshitz--Gilbert (LLG) equation coupled with the\nMaxwell equations (the so "
     "called stochastic MLLG system) describes the creation\nof domain walls and vortices.\n",
     "001000"},
    {"Comparative study of Discrete Wavelet Transforms and Wavelet Tensor Train decomposition to feature "
     "extraction of FTIR data of medicinal plants",
     "  Fourier-transform infra-red (FTIR) spectra of samples from 7 plant species\nwere used to explore the "
     "influence of preprocessing and feature extraction on\nefficiency of machine learning algorithms.\n",
     "101100"},
    {"On maximizing the fundamental frequency of the complement of an obstacle",
     "  Let $\\Omega \\subset \\mathbb{R}^n$ be a bounded domain satisfying a\nHayman-type asymmetry condition, "
     "and let $ D $ be an arbitrary bounded domain\nreferred to as \"obstacle\".\n",
     "001000"},
    {"On the rotation period and shape of the hyperbolic asteroid 1I/`Oumuamua (2017 U1) from its lightcurve",
     "  We observed the newly discovered hyperbolic minor planet 1I/`Oumuamua (2017\nU1) on 2017 October 30 with "
     "Lowell Observatory's 4.3-m Discovery Channel\nTelescope.\n",
     "010000"},
    {"Adverse effects of polymer coating on heat transport at solid-liquid interface",
     "  The ability of metallic nanoparticles to absorb light and convert it to heat\ncan be exploited in "
     "medical applications, e.g. photothermal therapy.\n",
     "010000"},
    {"SPH calculations of Mars-scale collisions: the role of the Equation of State, material rheologies, and "
     "numerical effects",
     "  We model large-scale (2000km) impacts on a Mars-like planet using a\nSmoothed Particle Hydrodynamics "
     "code.\n",
     "010000"},
    {"$\\mathcal{R}_{0}$ fails to predict the outbreak potential in the presence of natural-boosting immunity",
     "  Time varying susceptibility of host at individual level due to waning and\nboosting immunity is known to "
     "induce rich long-term behavior of disease\ntransmission dynamics.\n",
     "001010"},
    {"A global sensitivity analysis and reduced order models for hydraulically-fractured horizontal wells",
     "  We present a systematic global sensitivity analysis using the Sobol method\nwhich can be utilized to rank "
     "the variables that affect two quantity of\ninterests.\n",
     "110000"},
    {"Role of Skin Friction Drag during Flow-Induced Reconfiguration of a Flexible Thin Plate",
     "  We investigate drag reduction due to the flow-induced reconfiguration of a\nflexible thin plate in "
     "presence of skin friction drag at low Reynolds\nNumber.\n",
     "010000"},
    {"Supporting mixed-datatype matrix multiplication within the BLIS framework",
     "  We approach the problem of implementing mixed-datatype support within the\ngeneral matrix multiplication "
     "(gemm) operation of the BLIS framework.\n",
     "100000"},
    {"Bayesian inference for spectral projectors of covariance matrix",
     "  Let $X_1, \\ldots, X_n$ be i.i.d. sample in $\\mathbb{R}^p$ with zero mean\nand the covariance matrix "
     "$\\mathbf{\\Sigma^*}$.\n",
     "001100"},
    {"Optimizing a Generalized Gini Index in Stable Marriage Problems: NP-Hardness, Approximation and a "
     "Polynomial Time Special Case",
     "  This paper deals with fairness in stable marriage problems. The idea studied\nhere is to achieve fairness "
     "thanks to a Generalized Gini Index (GGI).\n",
     "100000"},
    {"Fairness-aware Classification: Criterion, Convexity, and Bounds",
     "  Fairness-aware classification is receiving increasing attention in the\nmachine learning fields.\n",
     "100100"},
    {"Deep Learning for Portfolio Optimisation",
     "  We adopt deep learning models to directly optimise the portfolio Sharpe\nratio.\n",
     "100101"},
    {"Volatility estimation for stochastic PDEs using high-frequency observations",
     "  We study the parameter estimation for parabolic, linear, second-order,\nstochastic partial differential "
     "equations (SPDEs) observing a mild solution on\na discrete grid in time and space.\n",
     "001101"},
    {"Gene regulatory network inference with latent Gaussian graphical models",
     "  Inferring gene regulatory networks from expression data is a central task in\nsystems biology; we propose "
     "a latent-variable Gaussian graphical model.\n",
     "000110"},
    {"Protein structure prediction with geometric deep learning",
     "  We present a rotation-equivariant network that predicts residue contacts\nfrom multiple sequence "
     "alignments, improving \"hard\" targets by 12%.\n",
     "100010"},
    {"Quantum error correction with surface codes under biased noise",
     "  Surface codes tailored to dephasing-biased noise achieve thresholds well\nabove the unbiased case.\n",
     "110000"},
    {"Topological phases of interacting fermions in one dimension",
     "  We classify gapped phases of interacting fermionic chains with symmetry,\nusing matrix product states.\n",
     "011000"},
    {"Sharp thresholds for random k-SAT",
     "  We determine the satisfiability threshold of random k-SAT for all large k,\nconfirming a prediction from "
     "statistical physics.\n",
     "101000"},
    {"A note on the Riemann hypothesis for function fields",
     "  We give a short proof of the Weil bound for curves over finite fields,\nfollowing Bombieri and Stepanov.\n",
     "001000"},
    {"Variational inference with normalizing flows on manifolds",
     "  Normalizing flows are extended to Riemannian manifolds, allowing flexible\nposteriors on spheres and "
     "tori.\n",
     "100100"},
    {"Dark matter constraints from dwarf spheroidal galaxies",
     "  Using six years of gamma-ray data, we set limits on the annihilation cross\nsection of weakly interacting "
     "massive particles.\n",
     "010000"},
    {"Optimal execution with stochastic liquidity",
     "  We solve the optimal liquidation problem of a large trader when market depth\nfollows a mean-reverting "
     "process.\n",
     "001001"},
    {"Estimating heterogeneous treatment effects with random forests",
     "  Causal forests estimate conditional average treatment effects with valid\nconfidence intervals.\n",
     "000100"},
    {"Spiking neural networks for event cameras",
     "  We train spiking networks end-to-end on event-camera streams and reach\ncompetitive accuracy with a "
     "fraction of the energy.\n",
     "100000"},
    {"Ergodicity of the stochastic Navier-Stokes equations with degenerate noise",
     "  We prove unique ergodicity for the 2D stochastic Navier-Stokes equations\nforced by noise acting on few "
     "modes.\n",
     "011000"},
    {"Population dynamics of antibiotic resistance in structured environments",
     "  Spatial structure slows the spread of resistance; we model it with a\nreaction-diffusion system and "
     "compare with experiments.\n",
     "010010"},
    {"Robust covariance estimation under heavy tails",
     "  We propose a shrinkage estimator that attains sub-Gaussian deviation bounds\nfor heavy-tailed samples.\n",
     "001100"},
    {"Graph neural networks for combinatorial optimization",
     "  Message-passing networks learn heuristics for routing problems and transfer\nto larger instances.\n",
     "100000"},
    {"Superconductivity in twisted bilayer graphene",
     "  Near the magic angle, flat bands lead to correlated insulating states and\nunconventional "
     "superconductivity.\n",
     "010000"},
    {"Credit risk modelling with deep survival analysis",
     "  We model time to default with neural survival models and compare with Cox\nregression on a loan book.\n",
     "100101"},
    {"Mixing times of random walks on dynamical percolation",
     "  We bound the mixing time of a random walker on a percolation cluster that\nevolves in time.\n",
     "001100"},
    {"Single-cell transcriptomics clustering with optimal transport",
     "  Optimal transport distances between cells give clusters that match known\ncell types.\n",
     "100110"},
    {"Gravitational wave detection with matched filtering on GPUs",
     "  A GPU implementation of matched filtering lowers the latency of compact\nbinary coalescence searches.\n",
     "110000"},
    {"Hodge theory of degenerations",
     "  We study limiting mixed Hodge structures for semistable degenerations of\nprojective varieties.\n",
     "001000"},
    {"Adaptive conformal prediction under distribution shift",
     "  We give prediction sets that keep their coverage when the data distribution\ndrifts over time.\n",
     "000100"},
};
#define ARXIV_N ((int64_t) (sizeof(arxiv_rows) / sizeof(arxiv_rows[0])))

static const char * const arxiv_labels[6] = {"Computer Science",     "Physics",
                                             "Mathematics",          "Statistics",
                                             "Quantitative Biology", "Quantitative Finance"};

static void fput_quoted(FILE * f, const char * s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* Writes the arXiv fixture (CRLF record ends, as the competition file has) and returns its path. */
static const char * write_arxiv(char * path, size_t n, const char * dir, const char * name) {
    snprintf(path, n, "%s/%s", dir, name);
    FILE * f = fopen(path, "wb");
    cr_assert(f != NULL);
    fputs("ID,TITLE,ABSTRACT,Computer Science,Physics,Mathematics,Statistics,Quantitative Biology,"
          "Quantitative Finance\r\n", f);
    for (int64_t i = 0; i < ARXIV_N; i++) {
        fprintf(f, "%lld,", (long long) i + 1);
        fput_quoted(f, arxiv_rows[i].title);
        fputc(',', f);
        fput_quoted(f, arxiv_rows[i].abstract);
        for (int j = 0; j < 6; j++) fprintf(f, ",%c", arxiv_rows[i].labels[j]);
        fputs("\r\n", f);
    }
    fclose(f);
    return path;
}

Test(dataset, arxiv_defaults) {
    char path[512];
    write_arxiv(path, sizeof(path), rk_test_tmpdir(), "arxiv.csv");
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(path, NULL, &d), RK_OK, "%s", rk_last_error());
    cr_assert_eq(d->n_docs, ARXIV_N);
    cr_assert_eq(d->n_labels, 6);
    for (int j = 0; j < 6; j++) cr_assert_str_eq(d->label_names[j], arxiv_labels[j]);
    cr_assert_str_eq(d->path, path);
    for (int64_t i = 0; i < ARXIV_N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "%lld", (long long) i + 1);
        cr_assert_str_eq(d->ids[i], id);
        size_t n    = strlen(arxiv_rows[i].title) + strlen(arxiv_rows[i].abstract) + 32;
        char * want = malloc(n);
        snprintf(want, n, "Title: %s\nAbstract: %s", arxiv_rows[i].title, arxiv_rows[i].abstract);
        cr_assert_str_eq(d->texts[i], want, "doc %lld", (long long) i);
        free(want);
        for (int j = 0; j < 6; j++) {
            cr_assert_eq(d->labels[i * 6 + j], arxiv_rows[i].labels[j] - '0', "doc %lld label %d", (long long) i, j);
        }
        cr_assert_eq(rk_dataset_find_id(d, id), i);
    }
    cr_assert_eq(rk_dataset_find_id(d, "0"), -1);
    cr_assert_eq(rk_dataset_find_id(d, "41"), -1);
    cr_assert(starts_with(d->texts[0], "Title: Reconstructing Subject-Specific Effect Maps\nAbstract:   Predictive"));
    /* label sums of the fixture */
    int64_t want_sums[6] = {0};
    for (int64_t i = 0; i < ARXIV_N; i++) {
        for (int j = 0; j < 6; j++) want_sums[j] += arxiv_rows[i].labels[j] - '0';
    }
    for (int j = 0; j < 6; j++) cr_assert_eq(rk_dataset_label_count(d, j), want_sums[j]);
    cr_assert_eq(want_sums[0], 17); /* the fixture itself: CS 17, Physics 12, Math 15, Stats 13, QBio 5, QFin 4 */
    cr_assert_eq(want_sums[5], 4);
    rk_dataset_free(d);
}

Test(dataset, arxiv_gzip_and_spec) {
    char   plain[512], path[512];
    const char * dir = rk_test_tmpdir();
    write_arxiv(plain, sizeof(plain), dir, "arxiv.csv");
    char * text = read_whole(plain);
    snprintf(path, sizeof(path), "%s/arxiv.csv.gz", dir);
    gzFile gz = gzopen(path, "wb");
    gzwrite(gz, text, (unsigned) strlen(text));
    gzclose(gz);
    free(text);

    struct rk_dataset_spec spec = {
        .text_columns  = "abstract , title",
        .label_columns = "Physics,Mathematics",
        .template_     = "{{paper}} {title}\\n\\t{ABSTRACT}",
        .id_column     = "id",
    };
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(path, &spec, &d), RK_OK, "%s", rk_last_error());
    cr_assert_eq(d->n_docs, ARXIV_N);
    cr_assert_eq(d->n_labels, 2);
    cr_assert_str_eq(d->label_names[0], "Physics");
    cr_assert_str_eq(d->label_names[1], "Mathematics");
    cr_assert(starts_with(d->texts[1], "{paper} Rotation Invariance Neural Network\n\t  Rotation"), "%s", d->texts[1]);
    cr_assert_eq(d->labels[2 * 2 + 1], 1); /* doc 3 is Mathematics */
    cr_assert_eq(d->labels[6 * 2 + 0], 1); /* doc 7 is Physics */

    /* the same labels: compatible; a different label subset: not */
    struct rk_dataset * e = NULL;
    cr_assert_eq(rk_dataset_load(plain, &spec, &e), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_dataset_check_compatible(d, e), RK_OK);
    rk_dataset_free(e);
    spec.label_columns = "Physics,Statistics";
    cr_assert_eq(rk_dataset_load(plain, &spec, &e), RK_OK, "%s", rk_last_error());
    expect_error(rk_dataset_check_compatible(d, e), RK_STATUS_FORMAT, plain, "'Statistics'", "'Mathematics'");
    rk_dataset_free(e);
    spec.label_columns = "Physics";
    cr_assert_eq(rk_dataset_load(plain, &spec, &e), RK_OK, "%s", rk_last_error());
    expect_error(rk_dataset_check_compatible(d, e), RK_STATUS_FORMAT, plain, "1 labels", "has 2");
    rk_dataset_free(e);
    rk_dataset_free(d);
}

/* No ID column and no known text names: IDs are row numbers, labels the trailing 0/1 columns, and the
 * default template title-cases the column name. */
Test(dataset, auto_schema_without_known_names) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "s.csv",
               "review_text,source,positive,negative\n"
               "\"Great, would buy again\",web,1,0\n"
               "Broke after a week,app,0,1\n"
               ",web,0,0\n");
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(path, NULL, &d), RK_OK, "%s", rk_last_error());
    cr_assert_eq(d->n_docs, 3);
    cr_assert_eq(d->n_labels, 2);
    cr_assert_str_eq(d->label_names[0], "positive");
    cr_assert_str_eq(d->ids[0], "1");
    cr_assert_str_eq(d->ids[2], "3");
    cr_assert_str_eq(d->texts[0], "Review Text: Great, would buy again\nSource: web");
    cr_assert_str_eq(d->texts[2], "Review Text: \nSource: web");
    rk_dataset_free(d);
}

/* ---- data set: Reuters-21578 ------------------------------------------------------------------ */

Test(dataset, reuters_real_file) {
    const char *        path = reuters_path();
    struct rk_dataset * d    = NULL;
    double              t0   = now_s();
    cr_assert_eq(rk_dataset_load(path, NULL, &d), RK_OK, "%s", rk_last_error());
    cr_log_info("reuters: loaded in %.3f s", now_s() - t0);
    cr_assert_eq(d->n_docs, 7770);
    cr_assert_eq(d->n_labels, 90);
    cr_assert_str_eq(d->label_names[0], "acq");
    cr_assert_str_eq(d->label_names[89], "zinc");
    cr_assert_str_eq(d->ids[0], "1");
    cr_assert_str_eq(d->ids[d->n_docs - 1], "14818");
    int64_t earn = -1, acq = -1, total = 0;
    for (int64_t j = 0; j < d->n_labels; j++) {
        int64_t n = rk_dataset_label_count(d, j);
        total += n;
        if (strcmp(d->label_names[j], "earn") == 0) earn = n;
        if (strcmp(d->label_names[j], "acq") == 0) acq = n;
    }
    cr_assert_eq(earn, 2877);
    cr_assert_eq(acq, 1650);
    cr_assert_eq(total, 9585);
    cr_assert(starts_with(d->texts[0], "Title: BAHIA COCOA REVIEW\nBody: Showers continued throughout the week in\n"
                                       "the Bahia cocoa zone"), "%.100s", d->texts[0]);
    /* 663 BRIEF documents have an empty BODY: the line stays, with an empty value */
    int64_t n_brief = 0;
    for (int64_t i = 0; i < d->n_docs; i++) {
        size_t n = strlen(d->texts[i]);
        cr_assert(starts_with(d->texts[i], "Title: "));
        cr_assert(strstr(d->texts[i], "\nBody: ") != NULL, "doc %s lacks the Body line", d->ids[i]);
        if (n >= 7 && strcmp(d->texts[i] + n - 7, "\nBody: ") == 0) n_brief++;
    }
    cr_assert_eq(n_brief, 663);
    rk_dataset_free(d);
}

/* ---- data set: bad input ---------------------------------------------------------------------- */

Test(dataset, bad_field_count) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "fields.csv",
               "ID,TITLE,ABSTRACT,A,B\n1,t1,\"multi\nline\",0,1\n2,t2,a2,0\n");
    struct rk_dataset * d = (struct rk_dataset *) 1;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "line 4: row has 4 fields, header has 5",
                 NULL);
    cr_assert_null(d);
}

Test(dataset, bad_label_value) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "label.csv",
               "ID,TITLE,ABSTRACT,Computer Science,Physics\n1,t,a,1,0\n2,t,a,0,2\n");
    struct rk_dataset * d = NULL;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path,
                 "line 3: column 'Physics': label value '2' is not 0 or 1", NULL);
    cr_assert_null(d);
}

Test(dataset, unterminated_quote) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "quote.csv", "ID,TITLE,A\n1,x,0\n2,\"never closed,1\n3,y,0\n");
    struct rk_dataset * d = NULL;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "line 3", "unterminated");
    cr_assert_null(d);
}

Test(dataset, empty_file) {
    char         path[512];
    const char * dir = rk_test_tmpdir();
    write_text(path, sizeof(path), dir, "empty.csv", "");
    struct rk_dataset * d = NULL;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "empty file (no header)", NULL);
    write_text(path, sizeof(path), dir, "bom.csv", "\xef\xbb\xbf\n");
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "empty file (no header)", NULL);
    write_text(path, sizeof(path), dir, "header.csv", "ID,TITLE,A\n");
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "no data rows", NULL);
    cr_assert_null(d);
}

Test(dataset, missing_file) {
    char path[512];
    snprintf(path, sizeof(path), "%s/does_not_exist.csv.gz", rk_test_tmpdir());
    struct rk_dataset * d = NULL;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_IO, path, "No such file", NULL);
    cr_assert_null(d);
}

Test(dataset, missing_named_column) {
    char path[512];
    write_arxiv(path, sizeof(path), rk_test_tmpdir(), "arxiv.csv");
    struct rk_dataset *    d    = NULL;
    struct rk_dataset_spec spec = {.text_columns = "TITLE,KEYWORDS"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "'KEYWORDS'", "line 1");
    spec = (struct rk_dataset_spec){.label_columns = "Physics,Chemistry"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "'Chemistry'", "label_columns");
    spec = (struct rk_dataset_spec){.template_ = "Title: {TITLE}\nVenue: {VENUE}"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "'VENUE'", "template");
    spec = (struct rk_dataset_spec){.template_ = "Title: {TITLE"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "unclosed", NULL);
    spec = (struct rk_dataset_spec){.id_column = "arxiv_id"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "'arxiv_id'", NULL);
    spec = (struct rk_dataset_spec){.text_columns = "TITLE,ABSTRACT", .label_columns = "ABSTRACT,Physics"};
    expect_error(rk_dataset_load(path, &spec, &d), RK_STATUS_ARG, path, "'ABSTRACT'", NULL);
    cr_assert_null(d);
}

Test(dataset, duplicate_id) {
    char path[512];
    write_text(path, sizeof(path), rk_test_tmpdir(), "dup.csv", "ID,TEXT,A\n7,x,0\n8,y,1\n7,z,1\n");
    struct rk_dataset * d = NULL;
    expect_error(rk_dataset_load(path, NULL, &d), RK_STATUS_FORMAT, path, "line 4: duplicate ID '7'", "line 2");
}

/* ---- split: iterative stratification ---------------------------------------------------------- */

static const double fr_80_5_15[3] = {0.80, 0.05, 0.15};

Test(split, reuters_stratified) {
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(reuters_path(), NULL, &d), RK_OK, "%s", rk_last_error());
    uint8_t * fold = malloc((size_t) d->n_docs);
    memset(fold, 0xee, (size_t) d->n_docs);
    cr_assert_eq(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fr_80_5_15, 3, 42, fold), RK_OK, "%s",
                 rk_last_error());

    /* disjoint and covering: every doc in exactly one fold, index lists partition 0..n-1 */
    int64_t * idx   = malloc((size_t) d->n_docs * sizeof(int64_t));
    uint8_t * hit   = calloc((size_t) d->n_docs, 1);
    int64_t   total = 0;
    for (uint8_t j = 0; j < 3; j++) {
        int64_t n = rk_split_indices(fold, d->n_docs, j, idx);
        cr_assert_eq(n, rk_split_indices(fold, d->n_docs, j, NULL));
        for (int64_t k = 0; k < n; k++) {
            cr_assert(k == 0 || idx[k] > idx[k - 1]);
            cr_assert_eq(hit[idx[k]], 0);
            hit[idx[k]] = 1;
        }
        double share = (double) n / (double) d->n_docs;
        cr_log_info("fold %s: %lld docs (%.4f, target %.2f)", rk_split_name(j), (long long) n, share, fr_80_5_15[j]);
        cr_assert(fabs(share - fr_80_5_15[j]) <= 0.01, "fold %d has %lld docs (%.4f of all), target %.2f", j,
                  (long long) n, share, fr_80_5_15[j]);
        total += n;
    }
    cr_assert_eq(total, d->n_docs);

    /* per-label shares: every fold within 0.05 of its target, for labels with >= 20 documents */
    int64_t n_checked = 0;
    double  worst[3]  = {0};
    for (int64_t l = 0; l < d->n_labels; l++) {
        int64_t n_l = rk_dataset_label_count(d, l);
        if (n_l < 20) continue;
        int64_t k[3] = {0};
        for (int64_t i = 0; i < d->n_docs; i++) {
            if (d->labels[i * d->n_labels + l]) k[fold[i]]++;
        }
        for (int j = 0; j < 3; j++) {
            double share = (double) k[j] / (double) n_l;
            double dev   = fabs(share - fr_80_5_15[j]);
            if (dev > worst[j]) worst[j] = dev;
            cr_assert(dev <= 0.05, "label %s (%lld docs): fold %d share %.3f, target %.2f", d->label_names[l],
                      (long long) n_l, j, share, fr_80_5_15[j]);
        }
        cr_assert(k[1] >= 1 && k[2] >= 1, "label %s has no val or test document", d->label_names[l]);
        n_checked++;
    }
    cr_assert_eq(n_checked, 44);
    cr_log_info("worst per-label share deviation: train %.4f val %.4f test %.4f", worst[0], worst[1], worst[2]);
    free(idx);
    free(hit);
    free(fold);
    rk_dataset_free(d);
}

Test(split, deterministic_per_seed) {
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(reuters_path(), NULL, &d), RK_OK, "%s", rk_last_error());
    uint8_t * a = malloc((size_t) d->n_docs);
    uint8_t * b = malloc((size_t) d->n_docs);
    uint8_t * c = malloc((size_t) d->n_docs);
    cr_assert_eq(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fr_80_5_15, 3, 42, a), RK_OK);
    cr_assert_eq(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fr_80_5_15, 3, 42, b), RK_OK);
    cr_assert_eq(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fr_80_5_15, 3, 43, c), RK_OK);
    cr_assert(memcmp(a, b, (size_t) d->n_docs) == 0, "same seed, different splits");
    int64_t n_diff = 0;
    for (int64_t i = 0; i < d->n_docs; i++) n_diff += a[i] != c[i];
    cr_log_info("seeds 42 and 43 differ on %lld docs", (long long) n_diff);
    cr_assert(n_diff > d->n_docs / 10, "seeds 42 and 43 differ on only %lld docs", (long long) n_diff);
    /* a pinned digest catches an unintended change of the algorithm or the PRNG */
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < d->n_docs; i++) h = (h ^ a[i]) * 1099511628211ull;
    cr_log_info("seed 42 split digest %016llx", (unsigned long long) h);
    free(a);
    free(b);
    free(c);
    rk_dataset_free(d);
}

/* Rare labels (one document, none at all) and unlabelled documents. */
Test(split, rare_labels_and_unlabelled_docs) {
    enum { N = 50, L = 4 };
    uint8_t labels[N * L] = {0};
    for (int i = 0; i < 40; i++) labels[i * L + 0] = 1;      /* label 0: 40 docs */
    for (int i = 30; i < 45; i++) labels[i * L + 1] = 1;     /* label 1: 15 docs, 10 shared with label 0 */
    labels[7 * L + 2] = 1;                                  /* label 2: one doc */
    /* label 3: none; docs 45..49 have no label */
    uint8_t fold[N];
    cr_assert_eq(rk_split_iterative(labels, N, L, fr_80_5_15, 3, 1, fold), RK_OK, "%s", rk_last_error());
    int64_t n[3] = {0};
    for (int i = 0; i < N; i++) {
        cr_assert(fold[i] < 3);
        n[fold[i]]++;
    }
    cr_assert_eq(fold[7], 0, "the single document of label 2 belongs in train (largest desire)");
    cr_assert(n[0] >= 38 && n[0] <= 42, "train %lld", (long long) n[0]);
    cr_assert(n[2] >= 6 && n[2] <= 9, "test %lld", (long long) n[2]);

    /* degenerate shapes */
    cr_assert_eq(rk_split_iterative(labels, 0, L, fr_80_5_15, 3, 1, fold), RK_OK);
    cr_assert_eq(rk_split_iterative(labels, N, 0, fr_80_5_15, 3, 1, fold), RK_OK);
    const double one[1] = {1.0};
    cr_assert_eq(rk_split_iterative(labels, N, L, one, 1, 1, fold), RK_OK);
    for (int i = 0; i < N; i++) cr_assert_eq(fold[i], 0);

    /* bad arguments */
    const double bad_sum[3] = {0.8, 0.1, 0.15};
    cr_assert_eq(rk_split_iterative(labels, N, L, bad_sum, 3, 1, fold), RK_STATUS_ARG);
    cr_assert(strstr(rk_last_error(), "sum") != NULL, "%s", rk_last_error());
    const double negative[2] = {1.2, -0.2};
    cr_assert_eq(rk_split_iterative(labels, N, L, negative, 2, 1, fold), RK_STATUS_ARG);
    cr_assert_eq(rk_split_iterative(labels, N, L, fr_80_5_15, 0, 1, fold), RK_STATUS_ARG);
    labels[3] = 2;
    cr_assert_eq(rk_split_iterative(labels, N, L, fr_80_5_15, 3, 1, fold), RK_STATUS_ARG);
}

/* Label distribution (LD, order 1) or label-pair distribution (LPD, order 2 with pairs (a, a) included),
 * as scikit-multilearn's measures.label_combination_distribution defines them; lower is better. */
static double combination_distribution(const struct rk_dataset * d, const uint8_t * fold, int n_folds, int order) {
    int64_t   L        = d->n_labels;
    int64_t   n_combos = order == 1 ? L : L * (L + 1) / 2;
    int64_t * count    = calloc((size_t) (n_combos * (n_folds + 1)), sizeof(int64_t)); /* [combo][fold], last = all */
    int64_t   size[8]  = {0};
    int64_t * have     = malloc((size_t) L * sizeof(int64_t));
    for (int64_t i = 0; i < d->n_docs; i++) {
        size[fold[i]]++;
        int64_t nh = 0;
        for (int64_t l = 0; l < L; l++) {
            if (d->labels[i * L + l]) have[nh++] = l;
        }
        for (int64_t a = 0; a < nh; a++) {
            for (int64_t b = a; b < (order == 1 ? a + 1 : nh); b++) {
                int64_t x = have[a], y = have[b];
                int64_t c = order == 1 ? x : x * L - x * (x - 1) / 2 + (y - x); /* index of (x <= y) */
                count[c * (n_folds + 1) + fold[i]]++;
                count[c * (n_folds + 1) + n_folds]++;
            }
        }
    }
    double  total    = 0.0;
    int64_t n_seen   = 0;
    for (int64_t c = 0; c < n_combos; c++) {
        int64_t all = count[c * (n_folds + 1) + n_folds];
        if (all == 0) continue;
        double dd    = (double) all / (double) (d->n_docs - all);
        double inner = 0.0;
        for (int j = 0; j < n_folds; j++) {
            int64_t s = count[c * (n_folds + 1) + j];
            inner += fabs((double) s / (double) (size[j] - s) - dd);
        }
        total += inner / n_folds;
        n_seen++;
    }
    free(count);
    free(have);
    return total / (double) n_seen;
}

/* Ours against scikit-multilearn's iterative_train_test_split (85/15, numbers from gen_split.py). */
Test(split, not_worse_than_skmultilearn) {
    char gpath[4096];
    rk_test_path(gpath, sizeof(gpath), "tests/golden/split_reuters_skml.txt");
    FILE * g = fopen(gpath, "r");
    cr_assert(g != NULL, "%s missing: run python3 tests/golden/gen_split.py", gpath);
    double ref_ld = -1, ref_lpd = -1;
    char   line[512];
    while (fgets(line, sizeof(line), g)) {
        if (strncmp(line, "ld ", 3) == 0) ref_ld = atof(line + 3);
        if (strncmp(line, "lpd ", 4) == 0) ref_lpd = atof(line + 4);
    }
    fclose(g);
    cr_assert(ref_ld > 0 && ref_lpd > 0, "%s lacks the ld/lpd lines", gpath);

    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(reuters_path(), NULL, &d), RK_OK, "%s", rk_last_error());
    uint8_t *    fold = malloc((size_t) d->n_docs);
    const double fr[2] = {0.85, 0.15};
    double       ld = 0, lpd = 0;
    const uint64_t seeds[3] = {1, 2, 3};
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(rk_split_iterative(d->labels, d->n_docs, d->n_labels, fr, 2, seeds[k], fold), RK_OK);
        ld += combination_distribution(d, fold, 2, 1) / 3;
        lpd += combination_distribution(d, fold, 2, 2) / 3;
    }
    cr_log_info("LD ours %.6f skmultilearn %.6f; LPD ours %.6f skmultilearn %.6f", ld, ref_ld, lpd, ref_lpd);
    /* margin: 25% relative; both are ~2e-4, i.e. shares off by a few hundredths of a percent */
    cr_assert(ld <= 1.25 * ref_ld, "LD %.6f vs skmultilearn %.6f", ld, ref_ld);
    cr_assert(lpd <= 1.25 * ref_lpd, "LPD %.6f vs skmultilearn %.6f", lpd, ref_lpd);
    free(fold);
    rk_dataset_free(d);
}

/* ---- split file ------------------------------------------------------------------------------- */

/* A small data set whose IDs need CSV quoting. */
static struct rk_dataset * small_dataset(const char * dir) {
    char path[512];
    write_text(path, sizeof(path), dir, "small.csv",
               "ID,TEXT,A,B\n"
               "a1,one,1,0\n"
               "\"b,2\",two,0,1\n"
               "\"c\"\"3\",three,1,1\n"
               "d4,four,1,0\n"
               "e5,five,0,1\n"
               "f6,six,1,0\n");
    struct rk_dataset * d = NULL;
    cr_assert_eq(rk_dataset_load(path, NULL, &d), RK_OK, "%s", rk_last_error());
    cr_assert_eq(d->n_docs, 6);
    cr_assert_str_eq(d->ids[1], "b,2");
    cr_assert_str_eq(d->ids[2], "c\"3");
    return d;
}

Test(split_file, round_trip) {
    const char *        dir = rk_test_tmpdir();
    struct rk_dataset * d   = small_dataset(dir);
    uint8_t             fold[6] = {0, 2, 1, 0, 2, 0};
    char                path[512];
    snprintf(path, sizeof(path), "%s/split.csv", dir);
    cr_assert_eq(rk_split_write(path, d, fold), RK_OK, "%s", rk_last_error());
    char * text = read_whole(path);
    cr_assert_str_eq(text, "ID,split\na1,train\n\"b,2\",test\n\"c\"\"3\",val\nd4,train\ne5,test\nf6,train\n");
    free(text);
    cr_assert_eq(count_dir_entries(dir), 2, "temporary file left behind"); /* small.csv, split.csv */
    uint8_t back[6];
    memset(back, 9, sizeof(back));
    cr_assert_eq(rk_split_read(path, d, back), RK_OK, "%s", rk_last_error());
    cr_assert(memcmp(fold, back, 6) == 0);

    /* the real data set, stratified: round trip through a gzip-free file of 7,770 rows */
    struct rk_dataset * r = NULL;
    cr_assert_eq(rk_dataset_load(reuters_path(), NULL, &r), RK_OK, "%s", rk_last_error());
    uint8_t * f1 = malloc((size_t) r->n_docs);
    uint8_t * f2 = malloc((size_t) r->n_docs);
    cr_assert_eq(rk_split_iterative(r->labels, r->n_docs, r->n_labels, fr_80_5_15, 3, 42, f1), RK_OK);
    snprintf(path, sizeof(path), "%s/reuters_split.csv", dir);
    cr_assert_eq(rk_split_write(path, r, f1), RK_OK, "%s", rk_last_error());
    cr_assert_eq(rk_split_read(path, r, f2), RK_OK, "%s", rk_last_error());
    cr_assert(memcmp(f1, f2, (size_t) r->n_docs) == 0);
    free(f1);
    free(f2);
    rk_dataset_free(r);
    rk_dataset_free(d);
}

Test(split_file, read_errors_name_the_line) {
    const char *        dir = rk_test_tmpdir();
    struct rk_dataset * d   = small_dataset(dir);
    uint8_t             fold[6];
    char                path[512];

    write_text(path, sizeof(path), dir, "unknown.csv",
               "ID,split\na1,train\n\"b,2\",test\nzz9,val\n\"c\"\"3\",val\nd4,train\ne5,test\nf6,train\n");
    expect_error(rk_split_read(path, d, fold), RK_STATUS_FORMAT, path, "line 4: unknown ID 'zz9'", "small.csv");

    write_text(path, sizeof(path), dir, "twice.csv", "ID,split\na1,train\nd4,val\na1,test\n");
    expect_error(rk_split_read(path, d, fold), RK_STATUS_FORMAT, path, "line 4: ID 'a1' listed twice",
                 "first on line 2");

    write_text(path, sizeof(path), dir, "value.csv", "split,ID\ntrain,a1\ndev,d4\n");
    expect_error(rk_split_read(path, d, fold), RK_STATUS_FORMAT, path, "line 3: split 'dev'", NULL);

    write_text(path, sizeof(path), dir, "missing.csv", "ID,split\na1,train\n\"b,2\",test\n\"c\"\"3\",val\n");
    expect_error(rk_split_read(path, d, fold), RK_STATUS_FORMAT, path, "3 of the 6 IDs", "'d4'");

    write_text(path, sizeof(path), dir, "header.csv", "doc,fold\na1,train\n");
    expect_error(rk_split_read(path, d, fold), RK_STATUS_FORMAT, path, "line 1", "'split'");

    snprintf(path, sizeof(path), "%s/absent.csv", dir);
    expect_error(rk_split_read(path, d, fold), RK_STATUS_IO, path, NULL, NULL);
    rk_dataset_free(d);
}

Test(split_file, atomic_write) {
    const char *        dir = rk_test_tmpdir();
    struct rk_dataset * d   = small_dataset(dir);
    char                path[512];
    snprintf(path, sizeof(path), "%s/split.csv", dir);
    uint8_t good[6] = {0, 0, 1, 2, 0, 0};
    cr_assert_eq(rk_split_write(path, d, good), RK_OK, "%s", rk_last_error());
    char * before = read_whole(path);

    /* a fold value that cannot be written, found at the last row: error, old file intact, no temp file */
    uint8_t bad[6] = {0, 2, 1, 0, 0, 3};
    expect_error(rk_split_write(path, d, bad), RK_STATUS_ARG, path, "fold 3", "'f6'");
    char * after = read_whole(path);
    cr_assert_str_eq(after, before);
    cr_assert_eq(count_dir_entries(dir), 2, "temporary file left behind");

    /* a fresh path: nothing created at all */
    char fresh[512];
    snprintf(fresh, sizeof(fresh), "%s/fresh.csv", dir);
    expect_error(rk_split_write(fresh, d, bad), RK_STATUS_ARG, fresh, NULL, NULL);
    cr_assert(access(fresh, F_OK) != 0);
    cr_assert_eq(count_dir_entries(dir), 2);

    /* unwritable location */
    char nodir[512];
    snprintf(nodir, sizeof(nodir), "%s/no/such/dir/split.csv", dir);
    expect_error(rk_split_write(nodir, d, good), RK_STATUS_IO, nodir, NULL, NULL);
    free(before);
    free(after);
    rk_dataset_free(d);
}
