"""Train a MobileViT reference model on Fashion-MNIST: seeded, resumable, with a progress bar.

    python scripts/train_reference.py --model mobilevit_xxs --epochs 12 --out runs/xxs

The run writes ``OUT/state.pt`` (model, EMA, optimizer, schedule, RNG and data order) every
``--save-every`` steps and at each epoch end; the same command resumes from it. At the end
it writes ``OUT/model.safetensors`` (the EMA weights stored as fp16, our timm layout) and
``OUT/result.json`` (test top-1 of those weights as loaded back, recipe, timings).

Recipe (chosen for a 2-core CPU budget of <= 45 min per variant): 64 px input (the
smallest multiple of 32 at which every MobileViT block still sees a 2x2 patch grid; the
28 px images are upsampled with Pillow's bilinear filter exactly as the toolkit's
``FASHION_PREPROCESSING`` does at inference), random 64 px crops of the 4-px zero-padded
image and horizontal flips, AdamW (lr 2e-3, weight decay 0.05, no decay on norms and
biases), one-cycle cosine schedule with 1 warm-up epoch, label smoothing 0.1, batch 128,
gradient-norm clip 2.0, an EMA of the weights (decay 0.999) which is what ships.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvit_deploy.inputs.datasets.fashion_mnist import CLASSES, FASHION_SIZE, load_fashion_mnist, to_model_inputs  # noqa: E402
from mvit_deploy.models import create_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilevit_xxs")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--size", type=int, default=FASHION_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--save-every", type=int, default=100, help="steps between resumable checkpoints")
    p.add_argument("--data", default=None, help="folder of the idx files (default: Debian's package)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--fp32",
        action="store_true",
        help="train in fp32 (default: bf16 autocast, 2-3x faster on AVX512-BF16/AMX CPUs)",
    )
    p.add_argument("--limit-steps", type=int, default=0, help="stop after this many steps (timing runs)")
    return p.parse_args(argv)


def pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [N, 28, 28] -> uint8 [N, size, size] through the shipped inference pipeline."""
    x = to_model_inputs(images, size)[:, 0]  # grey: the three channels are equal
    return torch.from_numpy(np.round(x * 255).astype(np.uint8))


def augment(batch: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of the zero-padded image and a horizontal flip, per sample."""
    n, h, w = batch.shape
    padded = F.pad(batch, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h)[None]).unsqueeze(-1).expand(n, h, w)
    cols = (dx[:, None] + torch.arange(w)[None]).unsqueeze(1).expand(n, h, w)
    out = padded[torch.arange(n)[:, None, None], rows, cols]
    flip = torch.rand(n, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def as_input(batch_u8: torch.Tensor) -> torch.Tensor:
    x = (batch_u8.float() / 255).unsqueeze(1).expand(-1, 3, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model, images_u8: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images_u8), batch):
        correct += (model(as_input(images_u8[i : i + batch])).argmax(1) == labels[i : i + batch]).sum().item()
    return correct / len(images_u8)


class Ema:
    """An exponential moving average of every float tensor of the state dict (BN statistics too)."""

    def __init__(self, name: str, model, decay: float):
        self.name, self.decay = name, decay
        self.state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].lerp_(v.detach().float(), 1 - d)
            else:
                self.state[k].copy_(v)

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = {k: v.clone() for k, v in state.items()}

    def model(self):
        m = create_model(self.name, num_classes=len(CLASSES))
        m.load_state_dict(self.state)
        return m.eval()


def param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    state_path = args.out / "state.pt"

    t0 = time.time()
    train_x, train_y = load_fashion_mnist("train", args.data)
    test_x, test_y = load_fashion_mnist("test", args.data)
    cache = args.out / f"pixels-{args.size}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            train_px, test_px = torch.from_numpy(z["train"]), torch.from_numpy(z["test"])
    else:
        train_px, test_px = pixels(train_x, args.size), pixels(test_x, args.size)
        np.savez(cache, train=train_px.numpy(), test=test_px.numpy())
    train_y, test_y = torch.from_numpy(train_y), torch.from_numpy(test_y)
    print(f"data: {len(train_px)} train / {len(test_px)} test at {args.size} px ({time.time() - t0:.1f} s)", flush=True)

    torch.manual_seed(args.seed)
    model = create_model(args.model, num_classes=len(CLASSES)).train().to(memory_format=torch.channels_last)
    ema = Ema(args.model, model, args.ema)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.999))
    steps_per_epoch = len(train_px) // args.batch
    total = steps_per_epoch * args.epochs
    warmup = steps_per_epoch
    step, history, train_seconds = 0, [], 0.0
    if state_path.is_file():
        st = torch.load(state_path, weights_only=True)
        if st["args"]["model"] != args.model or st["args"]["epochs"] != args.epochs:
            print(
                f"{state_path} is a run of {st['args']['model']} for {st['args']['epochs']} epochs; use another --out",
                file=sys.stderr,
            )
            return 2
        model.load_state_dict(st["model"])
        if "ema" in st and not any(k.startswith("module.") for k in st["ema"]):
            ema.load_state_dict(st["ema"])
        else:
            print("no usable EMA in the checkpoint: the EMA restarts from the current weights", flush=True)
            ema = Ema(args.model, model, args.ema)
        opt.load_state_dict(st["opt"])
        step, history, train_seconds = st["step"], st["history"], st["train_seconds"]
        print(f"resumed at step {step}/{total}", flush=True)

    def save():
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "args": vars(args) | {"out": str(args.out)},
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "history": history,
                "train_seconds": train_seconds,
            },
            tmp,
        )
        os.replace(tmp, state_path)

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not sys.stdout.isatty()) as bar:
        task = bar.add_task(f"{args.model}", total=total, completed=step, info="")
        while step < total:
            epoch, k = divmod(step, steps_per_epoch)
            # the data order of an epoch depends only on (seed, epoch): resuming mid-epoch replays it
            order = torch.randperm(len(train_px), generator=torch.Generator().manual_seed(args.seed * 1000 + epoch))
            aug_g = torch.Generator().manual_seed(args.seed * 1000 + epoch + 7)
            model.train()
            tick, loss_sum, n_sum = time.time(), 0.0, 0
            for k in range(k, steps_per_epoch):  # noqa: B020 (resumes mid-epoch at k; range() is built once)
                idx = order[k * args.batch : (k + 1) * args.batch]
                x = as_input(augment(train_px[idx], aug_g))
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, args.lr)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
                    loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
                opt.step()
                ema.update(model, step)
                step += 1
                loss_sum, n_sum = loss_sum + loss.item(), n_sum + 1
                bar.update(task, completed=step, info=f"epoch {epoch + 1} loss {loss_sum / n_sum:.3f}")
                if step % args.save_every == 0 or step == total or step == args.limit_steps:
                    train_seconds += time.time() - tick
                    tick = time.time()
                    save()
                if step == args.limit_steps:
                    ms = 1000 * train_seconds / (step * args.batch)
                    print(f"{step} steps, {ms:.2f} ms/image", flush=True)
                    return 0
            acc = evaluate(ema.model(), test_px, test_y)
            history.append({"epoch": epoch + 1, "loss": loss_sum / max(1, n_sum), "ema_test_top1": acc})
            save()
            print(
                f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / max(1, n_sum):.4f}, EMA test top-1 {acc:.4f}",
                flush=True,
            )

    # ship the EMA weights as fp16, and measure them as the toolkit will load them
    from safetensors.torch import load_file, save_file

    shipped = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in ema.state.items()
    }
    save_file(
        shipped, str(args.out / "model.safetensors"), metadata={"format": "pt", "mvit_deploy.pretrained": "fashion"}
    )
    reloaded = create_model(args.model, num_classes=len(CLASSES))
    reloaded.load_state_dict(
        {
            k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(args.out / "model.safetensors")).items()
        }
    )
    acc = evaluate(reloaded, test_px, test_y)
    result = {
        "model": args.model,
        "test_top1": acc,
        "test_images": len(test_px),
        "input_size": args.size,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "ema": args.ema,
        "bf16_autocast": not args.fp32,
        "seed": args.seed,
        "threads": args.threads,
        "train_minutes": round(train_seconds / 60, 1),
        "torch": torch.__version__,
        "history": history,
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.model}: test top-1 {acc:.4f} (fp16 weights as loaded), {train_seconds / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
