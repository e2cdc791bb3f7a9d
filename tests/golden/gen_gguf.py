"""Golden data for tests/test_gguf.c (the GGUF reader and the ggml block types).

Writes, next to this script:
  gguf_synth.gguf   a small GGUF file: every metadata value type, and one tensor per ggml type rk dequantizes
                    (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 quantized by gguf.quants from seeded floats;
                    Q2_K..Q6_K, which gguf-py cannot quantize, as seeded random bytes with small finite f16 scales)
  gguf_synth.rkgd   gguf-py's numpy dequantization of every tensor, named by the tensor (numpy shape)
  gguf_smollm2.rkgd only with the real checkpoint present (RK_FETCH_DECODER=1 datasets/fetch_models.sh):
                    "first/<name>", "last/<name>" (64 values) for three tensors of different types, "sum/<name>"
                    for every tensor (float64 sum stored as f32 [hi, lo], hi + lo ~ the sum), "meta" (i32:
                    n_tensors, n_tokens, block_count, count of F32, Q4_1, Q8_0 tensors)

Requires: pip install gguf numpy (tested with gguf 0.19.0). Run: python3 tests/golden/gen_gguf.py
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rkgold  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SMOL = os.path.join(ROOT, "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

# byte offsets of the f16 scale fields in each k-quant block (ggml-common.h)
K_SCALES = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def synth():
    rng = np.random.default_rng(1234)
    path = os.path.join(HERE, "gguf_synth.gguf")
    w = gguf.GGUFWriter(path, arch="rktest")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_uint64("t.u64", 10000000000000000000)
    w.add_int64("t.i64", -9000000000000000000)
    w.add_float32("t.f32", 0.15625)
    w.add_float64("t.f64", -2.718281828459045)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo gguf")
    w.add_array("t.arr_i32", [1, -2, 3, -4, 5])
    w.add_array("t.arr_f32", [0.5, -1.25, 3.0])
    w.add_array("t.arr_str", ["a", "", "ßtring three", "<|im_end|>"])
    w.add_uint32("rktest.block_count", 2)

    gold = []

    def add(name, qtype, shape, data_bytes):
        w.add_tensor(name, data_bytes, raw_shape=data_bytes.shape, raw_dtype=qtype)  # byte shape
        deq = gguf.quants.dequantize(data_bytes, qtype).reshape(shape)
        gold.append((name, deq.astype(np.float32)))

    x = rng.uniform(-1, 1, size=(3, 64)).astype(np.float32)
    w.add_tensor("f32", x)
    gold.append(("f32", x))
    x16 = rng.uniform(-2, 2, size=(2, 3, 32)).astype(np.float16)
    w.add_tensor("f16", x16)
    gold.append(("f16", x16.astype(np.float32)))
    add("bf16", T.BF16, (5, 8), gguf.quants.quantize(rng.uniform(-3, 3, size=(5, 8)).astype(np.float32), T.BF16))
    for qt in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        shape = (3, 96)
        f = rng.normal(0, 0.5, size=shape).astype(np.float32)
        add(qt.name.lower(), qt, shape, gguf.quants.quantize(f, qt))
    for qt, offs in K_SCALES.items():
        shape = (2, 512)
        bs, ts = GGML_QUANT_SIZES[qt]
        nblk = shape[0] * shape[1] // bs
        raw = rng.integers(0, 256, size=(nblk, ts), dtype=np.uint8)
        for o in offs:
            sc = rng.uniform(0.001, 0.05, size=nblk).astype(np.float16)
            raw[:, o:o + 2] = sc.view(np.uint8).reshape(nblk, 2)
        add(qt.name.lower(), qt, shape, raw.reshape(shape[0], -1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rkgold.write(os.path.join(HERE, "gguf_synth.rkgd"), gold)
    print("wrote", path, os.path.getsize(path), "bytes")


def smollm2():
    if not os.path.exists(SMOL):
        print("skip gguf_smollm2.rkgd: run RK_FETCH_DECODER=1 datasets/fetch_models.sh first")
        return
    r = gguf.GGUFReader(SMOL)
    out = []
    picks = {"token_embd.weight", "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"}  # Q8_0, Q4_1, F32
    counts = {T.F32: 0, T.Q4_1: 0, T.Q8_0: 0}
    for t in r.tensors:
        counts[t.tensor_type] = counts.get(t.tensor_type, 0) + 1
        v = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        s = float(np.sum(v.astype(np.float64)))
        hi = np.float32(s)
        lo = np.float32(s - float(hi))
        out.append(("sum/" + t.name, np.array([hi, lo], dtype=np.float32)))
        if t.name in picks:
            out.append(("first/" + t.name, v[:64]))
            out.append(("last/" + t.name, v[-64:]))
    ntok = len(r.fields["tokenizer.ggml.tokens"].data)
    bc = int(r.fields["llama.block_count"].parts[-1][0])
    meta = [len(r.tensors), ntok, bc, counts[T.F32], counts[T.Q4_1], counts[T.Q8_0]]
    out.append(("meta", np.array(meta, dtype=np.int32)))
    rkgold.write(os.path.join(HERE, "gguf_smollm2.rkgd"), out)
    print("wrote gguf_smollm2.rkgd", meta)


if __name__ == "__main__":
    synth()
    smollm2()
