"""PyTorch side of `usi bench kernels`: the same SGEMM and convolution layers, timed the same
way (median of timed runs after a warm-up), printed as the same JSON shape.

    ~/ref/bin/python Tools/bench/torch_kernels.py --threads 2

Convolutions run in channels_last memory format (PyTorch's fastest CPU path, oneDNN).
Backward = input and weight gradients together, like ours.
"""
import argparse
import json
import statistics
import time

import torch

LAYERS = [  # name, batch, size, in, out, kernel, stride, groups — as KernelBenchmark.standardLayers
    ("conv3x3_64to64_32x32_n32", 32, 32, 64, 64, 3, 1, 1),
    ("conv3x3_128to128_16x16_n32", 32, 16, 128, 128, 3, 1, 1),
    ("conv3x3s2_64to128_32x32_n32", 32, 32, 64, 128, 3, 2, 1),
    ("conv1x1_256to64_32x32_n32", 32, 32, 256, 64, 1, 1, 1),
    ("conv1x1_64to256_32x32_n32", 32, 32, 64, 256, 1, 1, 1),
    ("dw3x3_96_32x32_n32", 32, 32, 96, 96, 3, 1, 96),
]


def median_seconds(fn, min_runs=5, min_seconds=0.5):
    fn()
    times = []
    while len(times) < min_runs or sum(times) < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sgemm-size", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.sgemm_size
    a, b = torch.rand(n, n), torch.rand(n, n)
    peak = 2 * n**3 / median_seconds(lambda: torch.mm(a, b)) / 1e9
    layers = []
    for name, batch, size, cin, cout, k, s, g in LAYERS:
        x = torch.rand(batch, cin, size, size).to(memory_format=torch.channels_last).requires_grad_()
        conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, groups=g, bias=False).to(
            memory_format=torch.channels_last)
        with torch.no_grad():
            y = conv(x)
        dy = torch.rand_like(y)
        out_size = y.shape[-1]
        flops = 2 * batch * out_size * out_size * cout * k * k * (cin // g)

        def forward():
            with torch.no_grad():
                conv(x)

        def backward():
            x.grad = None
            conv.weight.grad = None
            torch.autograd.backward(conv(x), dy)

        fwd = flops / median_seconds(forward) / 1e9
        # backward timing includes a forward; subtract the measured forward time
        both = median_seconds(backward)
        bwd = 2 * flops / max(both - flops / fwd / 1e9, 1e-9) / 1e9
        layers.append({"name": name, "fwd_gflops": fwd, "bwd_gflops": bwd,
                       "fwd_fraction": fwd / peak, "bwd_fraction": bwd / peak})
    print(json.dumps({"threads": args.threads, "sgemm_gflops": peak, "layers": layers}, sort_keys=True))


if __name__ == "__main__":
    main()
