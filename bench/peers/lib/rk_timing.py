"""Timing shared by the peer scripts in bench/peers, the twin of rk_bench_time_ms in bench/bench_common.h: CUDA
events, 3 warm-ups, the median of `reps` repetitions, the L2 flushed before each one by writing a buffer twice its
size. It lives in a subfolder so that .ci/device_check.sh, which runs every bench/peers/*.py, does not run it.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from rk_timing import l2_flush_buffer, times_ms
"""
import torch


def l2_flush_buffer(device="cuda"):
    """A uint8 buffer twice the L2 size of device 0 (64 MiB assumed when torch does not report it)."""
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 64 << 20) or (64 << 20)
    return torch.empty(2 * l2, dtype=torch.uint8, device=device)


def times_ms(fn, flush, reps, before=None):
    """The sorted milliseconds of `reps` calls of fn, each after writing `flush`; 3 warm-up calls first.
    before(), when given, runs untimed before every call (e.g. a forward whose backward is timed).
    The median is times[len(times) // 2], the fastest times[0]."""
    for _ in range(3):
        if before:
            before()
        fn()
    ts = []
    for r in range(reps):
        if before:
            before()
        flush.fill_(r & 0xFF)
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts
