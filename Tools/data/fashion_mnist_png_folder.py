#!/usr/bin/env python3
"""Writes Fashion-MNIST (Debian's dataset-fashion-mnist IDX files) as a PNG ImageFolder:
ROOT/train/<class>/<index>.png and ROOT/val/<class>/<index>.png (the test set), 8-bit grey.

Standard library only (gzip, zlib, struct), so any python3 runs it. Class folders are named
"<label>-<name>" ("0-T-shirt_top", "1-Trouser", ...), so that ImageFolder's sorted class order
is Fashion-MNIST's label order and a teacher fine-tuned on the folder can teach a student
trained on the IDX files (`usi train` with no DATA).

    python3 Tools/data/fashion_mnist_png_folder.py /tmp/fmnist-png [--train N] [--val N]

--train/--val keep the first N images of each split (all by default).
"""
import argparse
import gzip
import os
import struct
import zlib

CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SOURCE = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, kind, dims = struct.unpack(">HBB", data[:4])
    assert kind == 0x08, f"{path}: not unsigned bytes"
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return shape, data[4 + 4 * dims:]


def png_grey(width, height, pixels):
    """An 8-bit greyscale PNG (colour type 0), filter 0 on every row."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def write_split(root, split, prefix, limit):
    (count, height, width), images = read_idx(f"{SOURCE}/{prefix}-images-idx3-ubyte.gz")
    (label_count,), labels = read_idx(f"{SOURCE}/{prefix}-labels-idx1-ubyte.gz")
    assert count == label_count
    count = min(count, limit) if limit else count
    for label, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, split, f"{label}-{name}"), exist_ok=True)
    size = width * height
    for i in range(count):
        label = labels[i]
        path = os.path.join(root, split, f"{label}-{CLASSES[label]}", f"{i:05d}.png")
        with open(path, "wb") as f:
            f.write(png_grey(width, height, images[i * size:(i + 1) * size]))
    print(f"{split}: {count} images")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=0, help="first N training images (0 = all 60000)")
    parser.add_argument("--val", type=int, default=0, help="first N test images (0 = all 10000)")
    args = parser.parse_args()
    write_split(args.root, "train", "train", args.train)
    write_split(args.root, "val", "t10k", args.val)


if __name__ == "__main__":
    main()
