"""Train the small 3D U-Net of `unet.py` to predict nearest-neighbour affinities.

Plain PyTorch on CPU: random patches of the bundled FIB-SEM training volume, random flips along
z, y, x and y/x transposition, affinity targets computed from the augmented label patch,
class-balanced binary cross-entropy, Adam with cosine learning-rate decay. At the end the
network is evaluated on the whole test volume and its state_dict is saved with torch.save.

    python examples/inference/train.py --seed 0 --out examples/inference/unet.pt

Defaults (16x48x48 patches, batch 4, 600 iterations, lr 4e-3) take about 3 minutes on 2
idle CPU cores.

Affinity convention (chunkflow's): channels (z, y, x); channel c at voxel p is 1 when
labels[p] == labels[p - e_c] and labels[p] != 0 (0 = boundary), else 0. The first slice along
axis c has no previous voxel; it is excluded from loss and metrics.
"""

import argparse
import importlib.util
import logging
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data" / "gala_fibsem"
CHANNELS = ("z", "y", "x")
log = logging.getLogger("train")


def load_model_file(path: Path):
    """Import a chunkflow model file (defines InstantiatedModel, pre_process, post_process)."""
    spec = importlib.util.spec_from_file_location("unet_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_h5(path: Path) -> np.ndarray:
    """Read the `/stack` dataset of an HDF5 file."""
    with h5py.File(path, "r") as f:
        return f["stack"][:]


def affinity_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (targets, mask), both float32 of shape (3, *labels.shape)."""
    targets = np.zeros((3, *labels.shape), np.float32)
    mask = np.ones_like(targets)
    for c in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[c], prev[c] = slice(1, None), slice(None, -1)
        cur = labels[tuple(here)]
        targets[(c, *here)] = (cur == labels[tuple(prev)]) & (cur != 0)
        first = [c, slice(None), slice(None), slice(None)]
        first[c + 1] = 0
        mask[tuple(first)] = 0
    return targets, mask


def sample_batch(image, labels, patch_size, batch_size, rng):
    """Random augmented patches: (image (B,1,Z,Y,X), targets (B,3,...), mask (B,3,...))."""
    images, targets, masks = [], [], []
    for _ in range(batch_size):
        start = [rng.integers(0, s - p + 1) for s, p in zip(image.shape, patch_size)]
        box = tuple(slice(b, b + p) for b, p in zip(start, patch_size))
        img, lab = image[box], labels[box]
        for axis in range(3):
            if rng.random() < 0.5:
                img, lab = np.flip(img, axis), np.flip(lab, axis)
        if patch_size[1] == patch_size[2] and rng.random() < 0.5:
            img, lab = img.transpose(0, 2, 1), lab.transpose(0, 2, 1)
        # mild contrast/brightness jitter (the test volume is a little darker)
        img = np.clip(img * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05), 0, 1)
        aff, mask = affinity_targets(np.ascontiguousarray(lab))
        images.append(img[None])
        targets.append(aff)
        masks.append(mask)
    return tuple(torch.from_numpy(np.stack(a).astype(np.float32)) for a in (images, targets, masks))


def balanced_bce(logits, targets, mask):
    """BCE where, per channel, positives and negatives each weigh half of the loss."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    dims = (0, 2, 3, 4)
    pos, neg = targets * mask, (1 - targets) * mask
    pos_loss = (bce * pos).sum(dims) / pos.sum(dims).clamp(min=1)
    neg_loss = (bce * neg).sum(dims) / neg.sum(dims).clamp(min=1)
    return (0.5 * (pos_loss + neg_loss)).mean()


@torch.no_grad()
def predict_volume(model_file, image: np.ndarray) -> torch.Tensor:
    """Logits (3, Z, Y, X) for a whole volume in one pass (reflect-padded to the pooling grid)."""
    model = model_file.InstantiatedModel.eval()
    factor = getattr(model_file, "POOLING_FACTOR", 1)
    pad = [(-s) % factor for s in image.shape]
    x = torch.from_numpy(image)[None, None]
    x = F.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]], mode="reflect")
    logits = model(model_file.pre_process(x))[0]
    return logits[:, : image.shape[0], : image.shape[1], : image.shape[2]]


def evaluate(model_file, image: np.ndarray, labels: np.ndarray) -> None:
    """Log balanced BCE, plus accuracy and F1 (both classes) of affinities > 0.5 per channel."""
    logits = predict_volume(model_file, image)
    targets, mask = (torch.from_numpy(a) for a in affinity_targets(labels))
    loss = balanced_bce(logits[None], targets[None], mask[None]).item()
    log.info("test balanced BCE loss %.4f", loss)
    pred = model_file.post_process(logits) > 0.5
    truth = targets > 0.5
    for c, name in enumerate(CHANNELS):
        valid = mask[c] > 0
        p, t = pred[c][valid], truth[c][valid]
        f1 = {}
        for cls, (pc, tc) in {"pos": (p, t), "neg": (~p, ~t)}.items():
            tp = (pc & tc).sum().item()
            f1[cls] = 2 * tp / max(pc.sum().item() + tc.sum().item(), 1)
        acc = (p == t).float().mean().item()
        log.info(
            "test %s-affinity: accuracy %.4f  F1(pos=connected) %.4f  F1(neg=boundary) %.4f  "
            "(negatives %.1f%%)",
            name,
            acc,
            f1["pos"],
            f1["neg"],
            100 * (1 - t.float().mean().item()),
        )


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", type=Path, default=DATA / "train-image.h5")
    p.add_argument("--labels", type=Path, default=DATA / "train-gt.lzf.h5")
    p.add_argument("--test-image", type=Path, default=DATA / "test-image.h5")
    p.add_argument("--test-labels", type=Path, default=DATA / "test-gt.lzf.h5")
    p.add_argument("--model", type=Path, default=HERE / "unet.py", help="chunkflow model file")
    p.add_argument("--patch-size", type=int, nargs=3, default=[16, 48, 48], metavar=("Z", "Y", "X"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "unet.pt", help="weights (state_dict)")
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)

    model_file = load_model_file(args.model)
    model = model_file.InstantiatedModel.train()
    factor = getattr(model_file, "POOLING_FACTOR", 1)
    if any(s % factor for s in args.patch_size):
        raise SystemExit(f"patch size {args.patch_size} must be divisible by {factor}")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %d parameters", args.model.name, n_params)

    image = read_h5(args.image).astype(np.float32) / 255
    labels = read_h5(args.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.iterations)

    start = time.perf_counter()
    running = 0.0
    for it in range(1, args.iterations + 1):
        x, targets, mask = sample_batch(image, labels, args.patch_size, args.batch_size, rng)
        loss = balanced_bce(model(model_file.pre_process(x)), targets, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item()
        if it % args.log_every == 0 or it == args.iterations:
            n = (it - 1) % args.log_every + 1
            log.info(
                "iter %d/%d  loss %.4f  lr %.2e  %.1f s",
                it,
                args.iterations,
                running / n,
                scheduler.get_last_lr()[0],
                time.perf_counter() - start,
            )
            running = 0.0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    log.info("saved %s (%.0f kB)", args.out, args.out.stat().st_size / 1024)
    evaluate(
        model_file, read_h5(args.test_image).astype(np.float32) / 255, read_h5(args.test_labels)
    )
    log.info("total %.1f s", time.perf_counter() - start)


if __name__ == "__main__":
    main()
