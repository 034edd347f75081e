#!/usr/bin/env python3
"""PyTorch reference for `usi bench data`: the same training pipeline in timm/torchvision.

    ~/ref/bin/python Tools/data/bench_torch_data.py DIR [--size 224] [--workers 1 2]
                                                        [--samples 512] [--batch-size 32]

Every JPEG under DIR (recursively) goes through PIL decode (`convert('RGB')`, as timm's
dataset does), RandomResizedCrop(scale 0.08-1, bicubic), horizontal flip, RandAugment
`rand-m7-mstd0.5-inc1`, ToTensor and Normalize (timm's create_transform, no colour jitter,
no random erasing), in a torch DataLoader with N worker processes. Prints
{"images": n, "size": 224, "results": [{"workers": w, "img_s": x, "img_per_cpu_s": y}]}
(img_per_cpu_s: images per CPU-second of the main and worker processes, the per-core rate,
meaningful when other jobs share the machine).
"""
import argparse
import json
import os
import resource
import time

import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset


class Files(Dataset):
    def __init__(self, files, total, transform):
        self.files, self.total, self.transform = files, total, transform

    def __len__(self):
        return self.total

    def __getitem__(self, i):
        with open(self.files[i % len(self.files)], 'rb') as f:
            img = Image.open(f).convert('RGB')
        return self.transform(img), 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument('dir')
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--samples', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=32)
    a = p.parse_args()
    exts = ('.jpg', '.jpeg', '.jpe', '.jfif')
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.dir) for f in fs
                   if f.lower().endswith(exts) and not f.startswith('.'))
    if not files:
        raise SystemExit(f'no JPEG files under {a.dir}')
    torch.set_num_threads(1)
    transform = create_transform(a.size, is_training=True, auto_augment='rand-m7-mstd0.5-inc1',
                                 interpolation='bicubic', color_jitter=None, re_prob=0.0)
    results = []
    for workers in a.workers:
        loader = DataLoader(Files(files, a.samples, transform), batch_size=a.batch_size, shuffle=True,
                            num_workers=workers, persistent_workers=False, drop_last=False)
        # warm-up pass over one batch (worker start-up is included in the timed run, as the
        # Swift side includes its thread start)
        warm = DataLoader(Files(files, a.batch_size, transform), batch_size=a.batch_size, num_workers=0)
        next(iter(warm))
        def cpu():
            # this process + its finished worker processes (workers exit after the epoch)
            s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
        cpu_start = cpu()
        start = time.perf_counter()
        n = 0
        for x, _ in loader:
            n += x.shape[0]
        seconds = time.perf_counter() - start
        del loader  # reap the workers so their CPU time is counted
        import gc; gc.collect()
        cpu_seconds = cpu() - cpu_start
        results.append(dict(workers=workers, img_s=round(n / seconds, 1),
                            img_per_cpu_s=round(n / max(cpu_seconds, 1e-9), 1)))
    print(json.dumps(dict(images=len(files), size=a.size, results=results)))


if __name__ == '__main__':
    main()
