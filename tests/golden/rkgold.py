"""Writer for the project's golden files (read by tests/golden.h).

Format, little-endian: b"RKGD", u32 version (1), u32 count, then per tensor:
u32 name length, name bytes (utf-8), u32 dtype (0 = f32, 1 = i32), u32 ndim, ndim x i64 dims, raw data.
"""
import struct

import numpy as np


def write(path, tensors):
    """tensors: list of (name, numpy array); float arrays are stored as f32, integer arrays as i32."""
    with open(path, "wb") as f:
        f.write(b"RKGD")
        f.write(struct.pack("<II", 1, len(tensors)))
        for name, arr in tensors:
            arr = np.asarray(arr)
            if np.issubdtype(arr.dtype, np.floating):
                arr, code = arr.astype("<f4"), 0
            else:
                arr, code = arr.astype("<i4"), 1
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<II", code, arr.ndim))
            f.write(struct.pack("<%dq" % arr.ndim, *arr.shape))
            f.write(np.ascontiguousarray(arr).tobytes())
