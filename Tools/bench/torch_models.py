"""PyTorch side of `usi bench models --train`: the same timm models, batch, input and timing,
printed as the same JSON shape.

    ~/ref/bin/python Tools/bench/torch_models.py --models resnet10t,resnet50 --batch 8 --threads 2

Inference: eval mode under torch.inference_mode (no BatchNorm folding; oneDNN fuses what it
can). Training: forward, cross-entropy, backward, AdamW step, zero_grad. Both in channels_last
(PyTorch's fastest CPU layout for convolutions; ours is NHWC throughout). Median of timed runs
after one warm-up, with the same minimum run counts and seconds as our harness.
"""
import argparse
import json

import timm
import torch

from torch_kernels import median_seconds  # same timing as the kernel table


def measure(name, batch, train):
    model = timm.create_model(name, num_classes=1000).to(memory_format=torch.channels_last)
    size = model.pretrained_cfg["input_size"][-1]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, size, size, generator=g) - 0.5).contiguous(memory_format=torch.channels_last)
    row = {"name": name, "batch": batch, "input_size": size}
    if train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters())
        labels = torch.arange(batch) % 1000

        def step():
            torch.nn.functional.cross_entropy(model(x), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)

        row["train_img_s"] = batch / median_seconds(step, 3, 2)
    model.eval()
    with torch.inference_mode():
        row["infer_img_s"] = batch / median_seconds(lambda: model(x), 3, 1)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", required=True)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, args.batch, args.train) for name in args.models.split(",")]
    print(json.dumps({"threads": args.threads, "models": rows}))


if __name__ == "__main__":
    main()
