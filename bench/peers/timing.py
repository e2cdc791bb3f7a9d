"""timing.py: the timing loop the peer scripts share (import it; running it does nothing).

median_ms(fn, flush, reps, before): fn() timed with torch device events after 3 warm-ups, each repetition preceded
by before() (untimed, optional) and an L2 flush (writing `flush`, a buffer twice the L2 size); returns the median and
the minimum in milliseconds, as bench/bench_*.c time our kernels.
"""


def median_ms(fn, flush, reps=30, before=None):
    import torch

    for _ in range(3):
        if before:
            before()
        fn()
    ts = []
    for i in range(reps):
        if before:
            before()
        flush.fill_(i & 0xFF)
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2], ts[0]


if __name__ == "__main__":
    pass
