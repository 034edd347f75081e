#!/usr/bin/env python3
"""Writes the USIData test fixtures from Pillow/timm/torchvision (run by a developer, never CI).

    ~/ref/bin/python Tools/data/make_fixtures.py [Tests/USIDataTests/Fixtures]

Outputs (all small):
  source.ppm            96x72 RGB crop of a real photo: input of the resize/eval cases
  ops_source.ppm        48x40 RGB: input of the RandAugment op cases
  ops_source_gray.pgm   48x40 L:   input of the grey op cases
  cases/*.ppm|pgm       expected outputs
  transforms.json       the cases: kind, parameters, expected file
  cmyk.jpg + cmyk.ppm   a CMYK (Adobe) JPEG and Pillow's RGB decoding of it
  djpeg_checksums.json  CRC-32 of djpeg's output for the system JPEGs (fallback when
                        /usr/bin/djpeg is absent at test time)
"""
import json
import math
import os
import subprocess
import sys

from PIL import Image, ImageOps
import timm
from timm.data import auto_augment as aa
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms
import torchvision.transforms.functional as F

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), '..', '..', 'Tests', 'USIDataTests', 'Fixtures')
os.makedirs(os.path.join(out_dir, 'cases'), exist_ok=True)

DOG = '/usr/share/darknet/data/dog.jpg'
MEAN = (0.485, 0.456, 0.406)
FILL = tuple(min(255, round(255 * x)) for x in MEAN)

cases = []


def save(img, name):
    ext = 'pgm' if img.mode == 'L' else 'ppm'
    path = f'cases/{name}.{ext}'
    img.save(os.path.join(out_dir, path))
    return path


base = Image.open(DOG).convert('RGB')
source = base.crop((250, 150, 250 + 384, 150 + 288)).resize((96, 72), Image.BICUBIC)
source.save(os.path.join(out_dir, 'source.ppm'))
ops_source = base.crop((100, 100, 100 + 240, 100 + 200)).resize((48, 40), Image.BICUBIC)
ops_source.save(os.path.join(out_dir, 'ops_source.ppm'))
ops_gray = ops_source.convert('L')
ops_gray.save(os.path.join(out_dir, 'ops_source_gray.pgm'))

# --- resized crops: timm RandomResizedCropAndInterpolation = F.resized_crop(img, i, j, h, w)
interp = {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR}
crop_cases = [
    # (top, left, height, width, out_h, out_w)
    (5, 7, 50, 61, 32, 32),
    (0, 0, 72, 96, 40, 40),
    (10, 20, 20, 15, 40, 40),  # upsampling
    (3, 2, 66, 90, 24, 56),
    (30, 40, 31, 29, 31, 29),  # same size: a plain crop
    (1, 1, 70, 50, 70, 17),   # only the horizontal pass
]
for name, mode in interp.items():
    for n, (i, j, h, w, oh, ow) in enumerate(crop_cases):
        out = F.resized_crop(source, i, j, h, w, [oh, ow], interpolation=F.InterpolationMode(name))
        cases.append(dict(kind='resized_crop', interpolation=name, top=i, left=j, height=h, width=w,
                          output_height=oh, output_width=ow, expected=save(out, f'crop_{name}_{n}')))

# --- timm's RandomResizedCropAndInterpolation sampling on fixed random draws is covered by the
# Swift tests via the algorithm; here only its output for fixed parameters.

# --- eval transform: timm transforms_imagenet_eval (resize shorter side to floor(size/crop_pct),
# centre crop)
for size, crop_pct, name in [(32, 0.875, 'bicubic'), (40, 0.95, 'bilinear'), (64, 1.0, 'bicubic')]:
    t = timm.data.create_transform(input_size=(3, size, size), is_training=False, crop_pct=crop_pct,
                                   interpolation=name)
    pil_steps = transforms.Compose(t.transforms[:-2])  # drop ToTensor/Normalize
    out = pil_steps(source)
    cases.append(dict(kind='eval', interpolation=name, size=size, crop_pct=crop_pct,
                      expected=save(out, f'eval_{name}_{size}')))

# --- RandAugment ops with fixed arguments (timm's functions with hparams img_mean fill, bicubic)
kw = dict(fillcolor=FILL, resample=Image.BICUBIC)
op_cases = [
    ('AutoContrast', None, lambda im: aa.auto_contrast(im)),
    ('Equalize', None, lambda im: aa.equalize(im)),
    ('Invert', None, lambda im: aa.invert(im)),
    ('Rotate', 13.7, lambda im: aa.rotate(im, 13.7, **kw)),
    ('Rotate', -21.0, lambda im: aa.rotate(im, -21.0, **kw)),
    ('Posterize', 1, lambda im: aa.posterize(im, 1)),
    ('Posterize', 3, lambda im: aa.posterize(im, 3)),
    ('Solarize', 77, lambda im: aa.solarize(im, 77)),
    ('Solarize', 180, lambda im: aa.solarize(im, 180)),
    ('SolarizeAdd', 77, lambda im: aa.solarize_add(im, 77)),
    ('Color', 1.63, lambda im: aa.color(im, 1.63)),
    ('Color', 0.37, lambda im: aa.color(im, 0.37)),
    ('Contrast', 1.63, lambda im: aa.contrast(im, 1.63)),
    ('Contrast', 0.37, lambda im: aa.contrast(im, 0.37)),
    ('Brightness', 1.63, lambda im: aa.brightness(im, 1.63)),
    ('Brightness', 0.37, lambda im: aa.brightness(im, 0.37)),
    ('Sharpness', 1.63, lambda im: aa.sharpness(im, 1.63)),
    ('Sharpness', 0.37, lambda im: aa.sharpness(im, 0.37)),
    ('ShearX', 0.21, lambda im: aa.shear_x(im, 0.21, **kw)),
    ('ShearX', -0.17, lambda im: aa.shear_x(im, -0.17, **kw)),
    ('ShearY', 0.21, lambda im: aa.shear_y(im, 0.21, **kw)),
    ('TranslateXRel', 0.315, lambda im: aa.translate_x_rel(im, 0.315, **kw)),
    ('TranslateYRel', -0.27, lambda im: aa.translate_y_rel(im, -0.27, **kw)),
]
for mode_name, src in [('rgb', ops_source), ('gray', ops_gray)]:
    for n, (op, arg, fn) in enumerate(op_cases):
        if mode_name == 'gray' and op in ('Rotate', 'ShearX') and arg is not None and arg < 0:
            continue
        im = src.copy()
        if mode_name == 'gray':
            # timm passes the RGB fill tuple; for an L image Pillow uses its first value
            kw_gray = dict(fillcolor=FILL[0], resample=Image.BICUBIC)
            fn_gray = {
                'Rotate': lambda im, a=arg: aa.rotate(im, a, **kw_gray),
                'ShearX': lambda im, a=arg: aa.shear_x(im, a, **kw_gray),
                'ShearY': lambda im, a=arg: aa.shear_y(im, a, **kw_gray),
                'TranslateXRel': lambda im, a=arg: aa.translate_x_rel(im, a, **kw_gray),
                'TranslateYRel': lambda im, a=arg: aa.translate_y_rel(im, a, **kw_gray),
            }.get(op, fn)
            out = fn_gray(im)
        else:
            out = fn(im)
        cases.append(dict(kind='op', op=op, argument=arg, channels=1 if mode_name == 'gray' else 3,
                          fill=list(FILL), expected=save(out, f'op_{mode_name}_{n}_{op}')))
# bilinear affine
out = aa.rotate(ops_source.copy(), 13.7, fillcolor=FILL, resample=Image.BILINEAR)
cases.append(dict(kind='op', op='Rotate', argument=13.7, channels=3, fill=list(FILL),
                  interpolation='bilinear', expected=save(out, 'op_rgb_rotate_bilinear')))

# --- normalisation: ToTensor + Normalize on the ops source, a few values
import torch
t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, (0.229, 0.224, 0.225))])
arr = t(ops_source).permute(1, 2, 0).contiguous().view(-1)
normalize_samples = [[i, float(arr[i])] for i in range(0, arr.numel(), 97)]

with open(os.path.join(out_dir, 'transforms.json'), 'w') as f:
    json.dump(dict(mean=MEAN, std=(0.229, 0.224, 0.225), fill=FILL, cases=cases,
                   normalize_samples=normalize_samples), f, indent=1)

# --- CMYK JPEG (Pillow writes Adobe-inverted CMYK) and Pillow's RGB decoding
cmyk_src = base.crop((300, 200, 340, 230)).convert('CMYK')
cmyk_src.save(os.path.join(out_dir, 'cmyk.jpg'), quality=90)
Image.open(os.path.join(out_dir, 'cmyk.jpg')).convert('RGB').save(os.path.join(out_dir, 'cmyk.ppm'))


# --- djpeg checksums (zlib CRC-32 of the decoded samples, grey files as 1 channel)
import re
import zlib


def pnm_pixels(raw):
    m = re.match(rb'P[56]\s+(\d+)\s+(\d+)\s+(\d+)\s', raw)
    return raw[m.end():]


checksums = {}
files = sorted(
    [os.path.join('/usr/share/libjxl-testdata/jxl/flower', f) for f in os.listdir('/usr/share/libjxl-testdata/jxl/flower') if f.endswith('.jpg')]
    + [os.path.join('/usr/share/darknet/data', f) for f in os.listdir('/usr/share/darknet/data') if f.endswith('.jpg')])
for path in files:
    for scale in (1, 8):
        raw = subprocess.run(['djpeg', '-pnm', '-scale', f'1/{scale}', path], check=True, capture_output=True).stdout
        checksums[f'{os.path.basename(path)}@1/{scale}'] = format(zlib.crc32(pnm_pixels(raw)), '08x')
with open(os.path.join(out_dir, 'djpeg_checksums.json'), 'w') as f:
    json.dump(dict(libjpeg_turbo=subprocess.run(['djpeg', '-version'], capture_output=True, text=True).stderr.strip(),
                   checksums=checksums), f, indent=1)
print('wrote', len(cases), 'transform cases and', len(checksums), 'checksums to', out_dir)

# --- Mixup/CutMix statistics from timm's own functions (numpy RNG), for the Swift
# statistics test: corrected lambda and box area under CutMix (alpha 1) per image size.
import numpy as np
from timm.data.mixup import cutmix_bbox_and_lam

np.random.seed(0)
stats = {}
for size in (224, 32):
    lams, areas, full = [], [], 0
    for _ in range(100000):
        lam = np.random.beta(1.0, 1.0)
        (yl, yh, xl, xh), corrected = cutmix_bbox_and_lam((8, 3, size, size), lam, correct_lam=True)
        lams.append(corrected)
        areas.append((yh - yl) * (xh - xl) / (size * size))
    lams = np.array(lams)
    stats[str(size)] = dict(cutmix_lambda_mean=float(lams.mean()), cutmix_lambda_std=float(lams.std()),
                            cutmix_area_mean=float(np.mean(areas)))
mix = np.random.beta(0.8, 0.8, size=200000)
stats['mixup_lambda_mean'] = float(mix.mean())
stats['mixup_lambda_std'] = float(mix.std())
with open(os.path.join(out_dir, 'mixup_stats.json'), 'w') as f:
    json.dump(stats, f, indent=1)
print('mixup stats', stats)
