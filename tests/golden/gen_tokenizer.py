#!/usr/bin/env python3
"""
gen_tokenizer.py: golden data for the WordPiece tokenizer (host/tokenizer/wordpiece.c), from Hugging Face's
BertTokenizerFast (tokenizers' BertNormalizer + BertPreTokenizer + WordPiece) on models/all-MiniLM-L6-v2.

Writes, under tests/golden/:
  tokenizer_minilm.jsonl        one JSON object per line: {"text", "max_len", "ids"} (plus "slow_ids" where the
                                slow BertTokenizerLegacy disagrees; the fast tokenizer is the reference)
  tokenizer_minilm_configs.jsonl  the same for other tokenizer_config.json options (cased, accents kept, no CJK
                                padding), each line with its "config"
  tokenizer_minilm_cps.txt      per block of 4096 code points, a hash of the ids of "x<c>x <c>" for every
                                code point c of the block (the C test recomputes them all)
  tokenizer_minilm_reuters.txt  per block of 50 Reuters-21578 training documents, a hash of their ids at
                                max_len 512 (texts rendered as "Title: {TITLE}\nBody: {BODY}", as datasets/ does)

With --tables it instead prints the C character tables of wordpiece.c (control, Mn, punctuation, combining
marks, lowercase), taken from tokenizers itself: its category and NFD tables are older than utf8proc's (about
Unicode 8) and its lowercase is newer (Rust's std).

Deterministic: fixed strings plus strings drawn from random.Random(20240611).
Usage (from the repository root):
  python3 tests/golden/gen_tokenizer.py [--model models/all-MiniLM-L6-v2] [--datasets ../shared/datasets]
  python3 tests/golden/gen_tokenizer.py --tables
"""
import argparse
import csv
import gzip
import json
import os
import random
import sys

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv_ids(h, ids):
    """FNV-1a 64 over each id as 4 little-endian bytes, then a 0xFFFFFFFF separator (same as the C test)."""
    for v in list(ids) + [0xFFFFFFFF]:
        v &= 0xFFFFFFFF
        for k in range(4):
            h ^= (v >> (8 * k)) & 0xFF
            h = (h * FNV_PRIME) & MASK64
    return h


# ---------------------------------------------------------------------------------------------------
# strings


def fixed_strings():
    s = []
    # empty, whitespace, controls
    s += ["", " ", "   ", "\t", "\n", "\r\n", " \t\n\r ", "\u00a0", "\u3000", "\u2028\u2029", "\u200b",
          "a\tb\nc\rd", "tab\there", "line1\nline2\n\nline4", "\x01\x02\x03", "a\x07b", "a\x0bb\x0cc",
          "a\x7fb", "a\x85b", "a\u00adb", "soft\u00adhyphen", "zero\u200bwidth", "zero\u200dwidth\u200cjoin",
          "\ufeffbom at start", "rtl\u202emark\u202c", "\ufffd", "a\ufffdb", "private\ue000use", "\U000f0000x",
          "word\u2060joiner", "\u180eb"]
    # plain English, casing, numbers, punctuation
    s += ["hello world", "Hello, World!", "HELLO WORLD", "The quick brown fox jumps over the lazy dog.",
          "unaffable", "unbelievably transformational", "tokenization", "antidisestablishmentarianism",
          "supercalifragilisticexpialidocious", "I'm", "don't won't can't", "rock'n'roll", "e-mail", "state-of-the-art",
          "1,234,567.89", "3.14159", "1e-10", "$1.5 billion", "12:30pm", "2024-06-11", "+1 (555) 123-4567",
          "50%", "#hashtag @mention", "a.b.c.d", "...", "!!!???", "?!?!", "--", "---...---", "(((nested)))",
          "[brackets] {braces} <angles>", "\"quoted\" 'single'", "back`tick`", "a~b^c|d\\e", "x=y+z*w/v",
          "under_score", "semi;colon:colon", "100km/h", "C++ and C#", "ABC123def456", "1st 2nd 3rd 4th",
          "0.5mg/kg", "U.S.A.", "Ph.D.", "p < 0.05", "$$$", "&amp;", "1/2 3/4", "#1"]
    # URLs, emails, code
    s += ["https://www.example.com/path/to/page?query=1&x=y#frag", "http://reuters.com", "user@example.com",
          "ftp://files.example.org/pub/file.tar.gz", "www.google.com", "C:\\Users\\name\\file.txt",
          "def f(x): return x**2", "if (a && b || !c) { return; }", "<html><body>hi</body></html>",
          "{\"key\": [1, 2, 3]}"]
    # accents, Latin extensions, casing edge cases
    s += ["café", "CAFÉ", "naïve résumé", "cafe\u0301 (combining)", "Ångström", "Øresund", "Straße", "STRASSE",
          "ẞ", "İstanbul", "ıi Iİ", "Æsir œuvre", "Dvořák", "Łódź", "São Paulo", "Zürich", "crème brûlée",
          "façade", "Ḱṓṛḗ", "a\u0300\u0301\u0302\u0303", "e\u0301\u0327", "q\u0307\u0323", "x\u0345y",
          "\u01c5 \u01c4 \u01c6", "ﬁ ﬂ ligatures", "Ⅻ roman", "½ ¼ ¾", "²³", "™ © ®", "µ", "Ω Ω",
          "K (kelvin)", "Å (angstrom)", "ǅungla"]
    # Greek, Cyrillic, other scripts
    s += ["ΟΔΟΣ", "Οδός οδός", "ΣΊΣΥΦΟΣ", "ἀρχή", "Ελληνικά", "Москва", "ПРИВЕТ мир", "Україна", "Ёлка",
          "עברית", "שָׁלוֹם", "العربية", "مَرْحَبًا", "हिन्दी", "नमस्ते", "বাংলা", "தமிழ்", "ไทย ภาษา", "ქართული",
          "Հայերեն", "አማርኛ", "ᚠᚢᚦᚨᚱᚲ", "Tiếng Việt", "Türkçe", "Ελλάς ΑΘΗΝΑ"]
    # CJK, Japanese, Korean
    s += ["中文", "我爱北京天安门", "中文English混合", "漢字かなカナ", "日本語のテキストです。", "ひらがな", "カタカナ",
          "ｶﾀｶﾅ half-width", "ＦＵＬＬＷＩＤＴＨ ａｂｃ １２３", "한국어", "안녕하세요 세계", "한" * 33, "한" * 34,
          "中" * 40, "𠀀𠀁 ext B", "\U0002b820\U0002b91f ext E boundary", "\U0002b920x", "豈 compat", "丽 compat sup",
          "〇一二三", "「引用」『二重』", "、。・", "ㄱㄴㄷ", "각", "中文，标点！", "株式会社", "㍿ ㈱"]
    # emoji and symbols
    s += ["😀", "I love 🍕 and 🍣!", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "☺︎", "🇺🇸 flag", "🥲 new emoji", "🫠 melting",
          "🫨 shaking", "★☆✓✗", "→ ← ↑ ↓", "∑∫√∞≠≤", "€100 £50 ¥1000", "§ ¶ † ‡", "♠♣♥♦", "°C",
          "‰ ‱", "…", "— – ‐", "‘single’ “double”", "«guillemets»", "¿Qué? ¡Sí!", "⸃ ⸅ \u2e43 \u2e52"]
    # special tokens in text
    s += ["[CLS]", "[SEP]", "hello [MASK] world", "[CLS] text [SEP]", "a[SEP]b", "[cls] lowercase",
          "[UNK]", "[PAD][PAD]", "[MASK", "[[MASK]]", "x[MASK]y", "[SEP ]", "[ CLS]"]
    # unassigned / newer code points, odd marks
    s += ["a\u0378b", "x\U000e0000y", "\U0010ffff", "abc\U0001f972def", "\u1734x", "a\U00011938b",
          "\u0890x\u0891", "\u061cx", "x\u034fy", "a\u0488b", "\u20dd", "e\u20e3", "\ua7cb\ua7cc", "\u1c89",
          "\U00010d50\U00010d51", "\U00016ea0", "\u2c2f\u2c5f", "\U00010570"]
    # word length limit (100 chars after normalization)
    s += ["a" * 99, "a" * 100, "a" * 101, "x " + "b" * 100 + " y", "x " + "b" * 101 + " y", "é" * 100, "é" * 101,
          "e\u0301" * 100, "A" * 150, "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
          "ab" * 60, "1234567890" * 11, "z" * 1000, "word " * 3 + "q" * 250 + " end"]
    # Reuters-like news lines
    s += [
        "BAHIA COCOA REVIEW",
        "Showers continued throughout the week in the Bahia cocoa zone, alleviating the drought since early January.",
        "Arrivals for the week ended February 22 were 155,221 bags of 60 kilos making a cumulative total of 5.93 mln.",
        "U.S. TREASURY SAYS IT WILL SELL 9.75 BILLION DLRS OF NOTES",
        "Shr 30 cts vs 25 cts\nNet 1,234,000 vs 987,000\nRevs 12.5 mln vs 10.1 mln",
        "Qtly div 12-1/2 cts vs 12-1/2 cts prior\nPay April 15\nRecord March 31",
        "The Bundesbank left its discount rate unchanged at 3.0 pct, a spokesman said.",
        "OPEC oil output rose to 16.5 mln barrels per day (bpd) in February, up from 15.8 mln bpd in January.",
        "Japan's Ministry of International Trade and Industry (MITI) said exports fell 3.2 pct.",
        "&lt;Texaco Inc> said it raised its posted prices for crude oil by 50 cts a barrel.",
        "REUTER &#3;",
        "Wheat futures closed 1-1/4 to 2-3/4 cents higher on the Chicago Board of Trade.",
        "The dollar opened at 153.20/30 yen in Tokyo, against 152.50/60 at the close in New York.",
        "GENCORP <GY> TO SELL UNITS FOR 1.4 BILLION DLRS",
        "Net loss 2,345,000 dlrs or 45 cts a share vs profit 1,234,000 dlrs or 23 cts.",
        "He said the U.K.-based company's pre-tax profits were 123.4 mln stg, versus 98.7 mln.",
        "Sugar prices fell to 7.85 cents/lb on the New York Coffee, Sugar and Cocoa Exchange.",
        "ECUADOR SUSPENDS OIL EXPORTS AFTER EARTHQUAKE - OFFICIAL",
        "Title: ACQUISITION\nBody: Company A said it agreed to acquire Company B for 45 dlrs a share.",
        "Title: SHORT NOTE\nBody: ",
    ]
    return s


def random_strings(n, seed=20240611):
    rng = random.Random(seed)
    words = ["the", "market", "Oil", "PRICES", "rose", "fell", "pct", "mln", "dlrs", "said", "company", "shares",
             "naïve", "Zürich", "Москва", "東京", "北京", "서울", "ΑΘΗΝΑ", "straße", "İzmir", "tokenizer", "unaffable",
             "1,000", "3.5", "U.S.", "e-mail", "[MASK]", "[SEP]", "😀", "🍕", "café", "ﬁnance", "Ⅻ", "ｶﾅ",
             "x\u0301y", "ab\u200bcd", "\u00ad", "q" * 30, "hyper" * 5, "العربية", "हिन्दी", "ไทย"]
    seps = [" ", " ", " ", "  ", "\t", "\n", ", ", ". ", "; ", " - ", "/", "", "\u00a0", "\u3000", "...", "!?", "'"]
    chars = ("abcXYZ019 .,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|\t\n\r\x01\x1f\x7f\u00a0\u00ad\u00e9\u00df\u0130\u0131"
             "\u0301\u0308\u0327\u03a3\u03c2\u0416\u05d0\u0627\u0915\u094d\u0e01\u1100\u1161\u11a8\u2014\u2019"
             "\u201c\u2026\u20ac\u2122\u3001\u3002\u3042\u30a2\u4e2d\u6587\uac00\ud55c\uff01\uff21\U0001f600"
             "\U0001f3fd\u200d\ufe0f\U00020000\ue000\u2e43\u0378")
    out = []
    for i in range(n):
        if i % 3 == 2:  # character soup
            out.append("".join(rng.choice(chars) for _ in range(rng.randint(1, 60))))
        else:           # word salad
            k = rng.randint(1, 40)
            out.append("".join(rng.choice(words) + rng.choice(seps) for _ in range(k)))
    return out


def long_strings():
    base = ("Showers continued throughout the week in the Bahia cocoa zone, alleviating the drought since early "
            "January and improving prospects for the coming temporao, although normal humidity levels have not "
            "been restored, Comissaria Smith said in its weekly review. ")
    return [base * 20, ("naïve café " * 300), ("中文字符" * 200), ("word, " * 600), ("x" * 99 + " ") * 60,
            ("[MASK] " * 600), ("Straße İstanbul ΟΔΟΣ " * 150)]


# ---------------------------------------------------------------------------------------------------
# generation


def load_tokenizers(model):
    from transformers import BertTokenizerFast
    from transformers.models.bert import BertTokenizerLegacy
    fast = BertTokenizerFast.from_pretrained(model)
    slow = BertTokenizerLegacy.from_pretrained(model)
    return fast, slow


def encode(tok, text, max_len):
    return tok(text, add_special_tokens=True, truncation=True, max_length=max_len, padding=False)["input_ids"]


def write_golden(fast, slow, out_dir):
    texts = fixed_strings() + random_strings(150)
    cases = [(t, 512) for t in texts]
    cases += [(t, 512) for t in long_strings()]
    cases += [(t, 16) for t in texts if len(t) > 20][:60] + [(t[:400], 16) for t in long_strings()]
    cases += [(t, 2) for t in texts[:5]] + [(t, 3) for t in texts[30:35]]
    path = os.path.join(out_dir, "tokenizer_minilm.jsonl")
    n_diff = 0
    with open(path, "w", encoding="ascii") as f:
        for text, max_len in cases:
            assert "\x00" not in text, "the C API takes NUL-terminated text"
            ids = encode(fast, text, max_len)
            rec = {"text": text, "max_len": max_len, "ids": ids}
            sids = encode(slow, text, max_len)
            if sids != ids:
                rec["slow_ids"] = sids
                n_diff += 1
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
    print("%s: %d cases, %d where the slow tokenizer differs, %d bytes" % (path, len(cases), n_diff,
                                                                          os.path.getsize(path)))


# Other tokenizer_config.json settings, run through a tokenizers pipeline built by hand on the same vocab.txt
# (what BertTokenizerFast builds from those options); each record carries its "config".
CONFIGS = [
    {"do_lower_case": False, "strip_accents": None, "tokenize_chinese_chars": True},
    {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": True},
    {"do_lower_case": True, "strip_accents": False, "tokenize_chinese_chars": True},
    {"do_lower_case": True, "strip_accents": None, "tokenize_chinese_chars": False},
]


def config_tokenizer(model, cfg):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    tok = Tokenizer(WordPiece.from_file(os.path.join(model, "vocab.txt"), unk_token="[UNK]",
                                        max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=cfg["tokenize_chinese_chars"],
                                                strip_accents=cfg["strip_accents"], lowercase=cfg["do_lower_case"])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


def write_configs(model, out_dir):
    texts = [t for t in fixed_strings() if 0 < len(t) <= 40 and "\x00" not in t]
    texts = texts[::3]
    path = os.path.join(out_dir, "tokenizer_minilm_configs.jsonl")
    n = 0
    with open(path, "w", encoding="ascii") as f:
        for cfg in CONFIGS:
            tok = config_tokenizer(model, cfg)
            tok.enable_truncation(max_length=64)
            for t in texts:
                f.write(json.dumps({"config": cfg, "text": t, "max_len": 64, "ids": tok.encode(t).ids},
                                   ensure_ascii=True) + "\n")
                n += 1
    print("%s: %d cases, %d bytes" % (path, n, os.path.getsize(path)))


def write_codepoints(fast, out_dir):
    path = os.path.join(out_dir, "tokenizer_minilm_cps.txt")
    backend = fast.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    with open(path, "w") as f:
        f.write("# block_start fnv1a64 of the ids of \"x<c>x <c>\" for c in [block_start, block_start+4096), "
                "surrogates and U+0000 skipped\n")
        for start in range(0, 0x110000, 4096):
            cps = [c for c in range(start, start + 4096) if c != 0 and not (0xD800 <= c <= 0xDFFF)]
            h = FNV_OFFSET
            if cps:
                encs = backend.encode_batch(["x%sx %s" % (chr(c), chr(c)) for c in cps])
                for e in encs:
                    h = fnv_ids(h, e.ids)
            f.write("%06X %016x\n" % (start, h))
    print("%s written" % path)


def reuters_texts(datasets_dir):
    path = os.path.join(datasets_dir, "reuters21578", "train.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return ["Title: %s\nBody: %s" % (r["TITLE"], r["BODY"]) for r in rows]


def write_reuters(fast, out_dir, datasets_dir, block=50):
    texts = reuters_texts(datasets_dir)
    path = os.path.join(out_dir, "tokenizer_minilm_reuters.txt")
    enc = fast(texts, add_special_tokens=True, truncation=True, max_length=512, padding=False)["input_ids"]
    with open(path, "w") as f:
        f.write("# %d documents; block_first_doc fnv1a64 of the ids (max_len 512) of %d documents\n" %
                (len(texts), block))
        for start in range(0, len(texts), block):
            h = FNV_OFFSET
            for ids in enc[start:start + block]:
                h = fnv_ids(h, ids)
            f.write("%d %016x\n" % (start, h))
    print("%s: %d documents, %d tokens in all" % (path, len(texts), sum(len(e) for e in enc)))


# ---------------------------------------------------------------------------------------------------
# C tables


def ranges(cps):
    rs = []
    for c in cps:
        if rs and c == rs[-1][1] + 1:
            rs[-1][1] = c
        else:
            rs.append([c, c])
    return rs


def print_tables():
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers
    keep = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False,
                                      lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=True,
                                       lowercase=False)
    lower = normalizers.Lowercase()
    nfd = normalizers.NFD()
    pre = pre_tokenizers.BertPreTokenizer()
    control, mn, punct, space, lows, marks = [], [], [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        s = "x" + chr(cp) + "x"
        if keep.normalize_str(s) == "xx":
            control.append(cp)
        elif strip.normalize_str(s) == "xx":
            mn.append(cp)  # nonspacing mark (or decomposes to marks only)
        w = pre.pre_tokenize_str(s)
        if len(w) == 3:
            punct.append(cp)
        elif len(w) == 2:
            space.append(cp)
        lo = lower.normalize_str(chr(cp))
        if lo != chr(cp):
            lows.append((cp, lo))
        # nonzero combining class in tokenizers' NFD tables: the char is reordered before U+0334 (ccc 1), or
        # U+0345 (ccc 240) is reordered after it. Decomposable chars are skipped (only their parts are looked up).
        x = chr(cp)
        if cp >= 0x300 and nfd.normalize_str(x) == x and (
                nfd.normalize_str("a" + x + "\u0334") != "a" + x + "\u0334" or
                nfd.normalize_str("a\u0345" + x) != "a\u0345" + x):
            marks.append(cp)
    want_space = [0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B)) + \
        [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
    assert space == want_space, "whitespace changed: update wp_is_whitespace"
    multi = [(c, l) for c, l in lows if len(l) != 1]
    assert multi == [(0x130, "i\u0307")], "multi-char lowercase changed: %r" % multi
    # lowercase runs: (lo, hi, stride, delta): every stride-th code point from lo to hi maps to cp + delta
    runs = []
    for cp, lo in lows:
        if len(lo) != 1:
            continue
        d = ord(lo) - cp
        if runs:
            r = runs[-1]
            if r[3] == d and ((r[0] == r[1] and cp - r[1] in (1, 2)) or (r[0] != r[1] and cp - r[1] == r[2])):
                r[2], r[1] = cp - r[1], cp
                continue
        runs.append([cp, cp, 1, d])

    def emit_ranges(name, cps, what):
        rs = ranges(cps)
        print("/* %s: %d code points in %d ranges */" % (what, len(cps), len(rs)))
        print("static const struct wp_range %s[] = {" % name)
        items = ["{0x%04X, 0x%04X}" % (a, b) for a, b in rs]
        for i in range(0, len(items), 6):
            print("    " + ", ".join(items[i:i + 6]) + ",")
        print("};")

    print("/* BEGIN generated by tests/golden/gen_tokenizer.py --tables (tokenizers %s) */" % tokenizers.__version__)
    emit_ranges("wp_control_ranges", control, "dropped by clean_text (Cc Cf Co Cs of tokenizers' tables, U+FFFD)")
    emit_ranges("wp_mn_ranges", mn, "removed when stripping accents (Mn of tokenizers' tables)")
    emit_ranges("wp_punct_ranges", punct, "punctuation of BertPreTokenizer")
    emit_ranges("wp_mark_ranges", marks, "nonzero canonical combining class in tokenizers' NFD tables")
    print("/* lowercase (Rust char::to_lowercase) except U+0130: %d code points in %d runs */" % (
        len(lows) - 1, len(runs)))
    print("static const struct wp_case_run wp_lower_runs[] = {")
    items = ["{0x%04X, 0x%04X, %d, %d}" % tuple(r) for r in runs]
    for i in range(0, len(items), 4):
        print("    " + ", ".join(items[i:i + 4]) + ",")
    print("};")
    print("/* END generated */")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--model", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--datasets", default=os.environ.get("RK_DATASETS", os.path.join(root, "..", "shared",
                                                                                     "datasets")))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden"))
    ap.add_argument("--tables", action="store_true", help="print the C character tables and exit")
    args = ap.parse_args()
    if args.tables:
        print_tables()
        return
    fast, slow = load_tokenizers(args.model)
    write_golden(fast, slow, args.out)
    write_configs(args.model, args.out)
    write_codepoints(fast, args.out)
    write_reuters(fast, args.out, args.datasets)


if __name__ == "__main__":
    main()
