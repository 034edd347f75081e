"""PyTorch twin of `usi train --recipe plain --epochs 5` on the embedded default, to compare the
two frameworks on the same recipe: timm mobilenetv3_small_050 (in_chans 1, 10 classes), Fashion-MNIST
resized 28→32 (PIL bicubic), 4-px zero padding + random 32 crop + flip, mean 0.449 / std 0.226
(ImageNet's averaged), AdamW 2e-3 / wd 2e-2 (timm groups), per-step warmup from 1e-4 over 1 epoch
and cosine to 1e-6 over 5 epochs (timm CosineLRScheduler, t_in_epochs=False), batch 128, drop last.
Evaluation: the 10 000 test images at 32 px, no crop. Prints top-1 per epoch.

    ~/ref/bin/python Tools/results/torch_plain_twin.py [--epochs 5] [--seed 0] [--threads 1]
"""
import argparse
import gzip
import math

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from timm.optim import param_groups_weight_decay


def idx(name, offset):
    return np.frombuffer(gzip.open(f"/usr/share/datasets/fashion-mnist/{name}").read(), np.uint8, offset=offset)


def resized(images):
    return np.stack([np.asarray(Image.fromarray(im).resize((32, 32), Image.BICUBIC)) for im in images])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    train = resized(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28))
    labels = torch.tensor(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    test = resized(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28))
    test_labels = torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    mean, std = 0.449, 0.226
    norm = lambda u8: (torch.tensor(u8).float() / 255 - mean) / std
    X, TX = norm(train)[:, None], norm(test)[:, None]
    model = timm.create_model("mobilenetv3_small_050", in_chans=1, num_classes=10)
    opt = torch.optim.AdamW(param_groups_weight_decay(model, 0.02), lr=2e-3)
    steps = len(X) // 128
    warm = round(5 * min(1, math.sqrt(a.epochs / 300))) * steps
    total = a.epochs * steps
    pad = (0 - mean) / std  # a zero pixel
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(X))
        for s in range(steps):
            t = epoch * steps + s
            lr = 1e-4 + t * (2e-3 - 1e-4) / warm if t < warm else 1e-6 + 0.5 * (2e-3 - 1e-6) * (1 + math.cos(math.pi * t / total))
            for g in opt.param_groups:
                g["lr"] = lr
            idx_ = perm[s * 128:(s + 1) * 128]
            x = F.pad(X[idx_], (4, 4, 4, 4), value=pad)
            out = torch.empty(len(idx_), 1, 32, 32)
            for k in range(len(idx_)):
                i, j = np.random.randint(0, 9, 2)
                crop = x[k, :, i:i + 32, j:j + 32]
                out[k] = crop.flip(2) if np.random.rand() < 0.5 else crop
            loss = F.cross_entropy(model(out), labels[idx_])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(TX[i:i + 1000]).argmax(1) == test_labels[i:i + 1000]).sum().item() for i in range(0, len(TX), 1000))
        print(f"epoch {epoch}: loss {loss.item():.4f} top-1 {100 * correct / len(TX):.2f}", flush=True)


if __name__ == "__main__":
    main()
