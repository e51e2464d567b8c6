"""A worker's memory over a long study: resident MB per trial, with and without recycling.

Runs ``lrsearch start`` on a study of many short trials (the default study's data and MLP, 2
epochs a trial) twice, side by side in one run:

- recycled: ``--pack 1`` (one trial at a time) with the default recycling, a worker process is
  replaced once its memory grew by more than ``LRSEARCH_RECYCLE_MB`` (128) since its first
  trial;
- not recycled: ``--pack 1`` with ``LRSEARCH_RECYCLE_MB`` set out of reach, one worker process
  for the whole study. Before compile-once, every trial rebuilt and recompiled its model and a
  process grew ~5.6 MB per trial (as a hand-written loop of ``clear_session``, build, compile and
  ``fit`` does: Keras issues #17458 and #20552); now every trial is loaded into the one model the
  worker compiled (:class:`lrsearch.packing.PackTrainer`);
- packed (``--pack``, default 8), not recycled: the same, 8 trials at a time.

The resident memory of the command's whole process tree (supervisor + worker) is sampled every
0.2 s and matched to the number of finished trials (the trial lines printed so far). Prints the
memory at trial 10 and at the end, the growth between, and the slope in MB per trial (least
squares over trials 10..N).

    python bench/memory.py [--trials 200] [--epochs 2] [--recycle-mb 128] [--pack 8]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STUDY = """\
[study]
name = "memory"
n_trials = {trials}
seed = 0
pruner = "none"

[data]
source = "digits"
batch_size = 64

[model]
type = "mlp"
hidden = [64, 32]

[training]
epochs = {epochs}
"""

TRIAL_LINE = re.compile(r"^#(\d+)\s")


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(stat[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(
    label: str, folder: Path, trials: int, epochs: int, recycle_mb: int, pack: int = 1
) -> dict[str, float]:
    study = folder / f"{label}.toml"
    study.write_text(STUDY.format(trials=trials, epochs=epochs), encoding="utf-8")
    env = {
        **os.environ,
        "LRSEARCH_RECYCLE_MB": str(recycle_mb),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "lrsearch.cli",
        "start",
        str(study),
        "--storage",
        f"sqlite:///{folder / (label + '.db')}",
        "--artifacts",
        "none",
        "--no-progress",
        "--pack",
        str(pack),
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder
    )
    done = [0]
    replaced = [0]

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if TRIAL_LINE.match(line):
                done[0] += 1
            elif "worker replaced" in line:
                replaced[0] += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[int, float]] = []
    while proc.poll() is None:
        samples.append((done[0], tree_rss_mb(proc.pid)))
        time.sleep(0.2)
    reader.join()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label}: lrsearch exited {proc.returncode}")
    # The peak memory seen while n trials were finished, per n.
    peak: dict[int, float] = {}
    for n, mb in samples:
        peak[n] = max(peak.get(n, 0.0), mb)
    xs = [n for n in sorted(peak) if n >= 10]
    ys = [peak[n] for n in xs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        sum((x - mean_x) ** 2 for x in xs), 1e-9
    )
    at10 = peak[xs[0]]
    late = max(peak[n] for n in xs if n >= xs[-1] - 10)
    return {
        "trials": float(done[0]),
        "seconds": seconds,
        "at10": at10,
        "max_after_10": max(ys),
        "late": late,
        "growth": max(ys) - at10,
        "slope": slope,
        "replaced": float(replaced[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--recycle-mb", type=int, default=128)
    parser.add_argument("--pack", type=int, default=8, help="a third run, packed (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = {
            "recycled": run("recycled", folder, args.trials, args.epochs, args.recycle_mb),
            "not recycled": run("kept", folder, args.trials, args.epochs, 1_000_000),
        }
        if args.pack > 1:
            label = f"packed {args.pack}"
            results[label] = run(
                "packed", folder, args.trials, args.epochs, 1_000_000, pack=args.pack
            )
    print(
        f"{args.trials} trials of {args.epochs} epochs (digits, MLP 64-32), resident memory of "
        "the command's process tree, peak per number of finished trials"
    )
    print(
        f"{'':14} {'trials':>6} {'time s':>7} {'MB @10':>7} {'max MB':>7} {'growth':>7} "
        f"{'MB/trial':>8} {'replaced':>8}"
    )
    for label, r in results.items():
        print(
            f"{label:14} {r['trials']:6.0f} {r['seconds']:7.0f} {r['at10']:7.0f} "
            f"{r['max_after_10']:7.0f} {r['growth']:+7.0f} {r['slope']:8.2f} {r['replaced']:8.0f}"
        )
    kept, recycled = results["not recycled"], results["recycled"]
    print(
        f"time recycled / not recycled: {recycled['seconds'] / kept['seconds']:.3f}; growth "
        f"{recycled['growth']:+.0f} MB vs {kept['growth']:+.0f} MB between trial 10 and the end"
    )


if __name__ == "__main__":
    main()
