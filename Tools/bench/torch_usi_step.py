"""PyTorch twin of `usi bench usi`: the same USI step, phase by phase, printed as the same JSON.

    ~/ref/bin/python Tools/bench/torch_usi_step.py --threads 2 [--teacher-weights T.safetensors]
    ~/ref/bin/python Tools/bench/torch_usi_step.py --threads 2 --bf16-teacher

The embedded default: student mobilenetv3_small_050 (1 input channel, 32 px, 10 classes),
teacher resnet10t (1 channel, 10 classes, as the bundled teacher; its weights when given, which
changes nothing in the timing), batch 128. The step is ours: teacher logits under
inference_mode on the student batch, CE on soft targets + 5 * KL
(batchmean), backward, AdamW (lr 2e-3, wd 2e-2), zero_grad, EMA update (timm ModelEmaV3).
Both models channels_last, PyTorch's fastest CPU layout. `--bf16-teacher` runs the teacher
under CPU autocast to bfloat16. Input batches are random (the data phase is timed by
`usi bench data` against Tools/data/bench_torch_data.py). Median of rounds after warm-up,
as our harness does.
"""
import argparse
import json
import statistics
import time

import timm
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3


def median(fn, warmup, rounds):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--student", default="mobilenetv3_small_050")
    p.add_argument("--teacher", default="resnet10t")
    p.add_argument("--teacher-weights")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16-teacher", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    student = timm.create_model(a.student, num_classes=10, in_chans=1).to(memory_format=torch.channels_last).train()
    teacher = timm.create_model(a.teacher, num_classes=10, in_chans=1).to(memory_format=torch.channels_last).eval()
    if a.teacher_weights:
        from safetensors.torch import load_file
        teacher.load_state_dict(load_file(a.teacher_weights))
    for q in teacher.parameters():
        q.requires_grad_(False)
    decay, no_decay = [], []
    for name, q in student.named_parameters():
        (no_decay if q.ndim <= 1 or name.endswith(".bias") else decay).append(q)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 2e-2}, {"params": no_decay, "weight_decay": 0}], lr=2e-3)
    ema = ModelEmaV3(student, decay=0.9936, use_warmup=True)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, a.input_size, a.input_size, generator=g).contiguous(memory_format=torch.channels_last)
    targets = torch.softmax(torch.randn(a.batch, 10, generator=g), dim=1)

    def teacher_logits():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16_teacher):
            return teacher(x).float()

    fixed = teacher_logits()

    def forward_backward(t):
        logits = student(x)
        kl = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(t, dim=1), reduction="batchmean", log_target=True)
        loss = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean() + 5 * kl
        loss.backward()

    def student_phase():
        forward_backward(fixed)
        optimizer.zero_grad(set_to_none=False)

    step_count = [0]

    def optimizer_phase():
        optimizer.step()
        step_count[0] += 1
        ema.update(student, step=step_count[0])

    def whole_step():
        t = teacher_logits()
        forward_backward(t)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        step_count[0] += 1
        ema.update(student, step=step_count[0])

    teacher_s = median(teacher_logits, a.warmup, a.rounds)
    student_s = median(student_phase, a.warmup, a.rounds)
    forward_backward(fixed)
    optimizer_s = median(optimizer_phase, a.warmup, a.rounds)
    optimizer.zero_grad(set_to_none=False)
    step_s = median(whole_step, a.warmup, a.rounds)
    print(json.dumps({
        "student": a.student, "teacher": a.teacher, "batch": a.batch, "input_size": a.input_size, "threads": a.threads,
        "rounds": a.rounds, "teacher_precision": "bf16" if a.bf16_teacher else "fp32", "teacher_s": teacher_s,
        "student_s": student_s, "optimizer_s": optimizer_s, "step_s": step_s, "step_img_s": a.batch / step_s,
        "teacher_share": teacher_s / (teacher_s + student_s + optimizer_s),
    }, sort_keys=True))


if __name__ == "__main__":
    main()
