"""Following a run: training loss per task every --log_every steps, dev metrics at every
evaluation, written as they happen so a run can be watched live.

    RUN_DIR/train_log.jsonl    {"step", "loss_sst", ...}: mean loss of each task over the window
    RUN_DIR/metrics.jsonl      one line per dev evaluation (written by the trainer)
    RUN_DIR/curves.png         both, against the optimizer step (redrawn at every evaluation)
    RUN_DIR/tensorboard/       the same scalars as TensorBoard events (--report_to tensorboard)

Watch live with `tail -f RUN_DIR/train_log.jsonl` or `tensorboard --logdir RUN_DIR/tensorboard`.
"""
from __future__ import annotations

import json
from pathlib import Path

from batching import TASKS
from evaluation import METRIC_NAMES

REPORTERS = ("none", "tensorboard")


class Tracker:
    def __init__(self, run_dir: Path, log_every: int, report_to: str = "none", start_step: int = 0,
                 enabled: bool = True):
        self.run_dir, self.log_every, self.enabled = Path(run_dir), log_every, enabled
        self.sum, self.n = {}, {}
        self.writer = None
        if not enabled:
            return
        self.log_path = self.run_dir / "train_log.jsonl"
        # A resumed run repeats the steps after its last saved state: drop what they logged.
        keep = [line for line in read_jsonl(self.log_path) if line["step"] <= start_step]
        self.log_path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            # purge_step: events at or after it (from before a crash) are dropped on resume.
            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"),
                                        purge_step=start_step + 1 if start_step else None)

    def train_loss(self, step: int, losses: dict):
        """Add one step's losses (task -> float); every log_every steps, write their means."""
        for t, v in losses.items():
            self.sum[t] = self.sum.get(t, 0.0) + v
            self.n[t] = self.n.get(t, 0) + 1
        if self.log_every and step % self.log_every == 0:
            record = {"step": step, **{f"loss_{t}": self.sum[t] / self.n[t] for t in self.sum}}
            self.sum, self.n = {}, {}
            if self.enabled:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                self._scalars("train", record)

    def evaluation(self, record: dict, history: list[dict]):
        """One dev evaluation (metrics + step): to TensorBoard, and curves.png redrawn."""
        if not self.enabled:
            return
        self._scalars("dev", {k: v for k, v in record.items()
                              if k == "step" or k in (*METRIC_NAMES.values(), "overall")})
        plot_curves(read_jsonl(self.log_path), history, self.run_dir / "curves.png")

    def _scalars(self, prefix: str, record: dict):
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(f"{prefix}/{k}", v, record["step"])
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(train_log: list[dict], history: list[dict], path: Path):
    """Train loss per task (every logged window) and dev metrics (every evaluation) against the step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for t in TASKS:
        points = [(r["step"], r[f"loss_{t}"]) for r in train_log if f"loss_{t}" in r]
        if points:
            ax1.plot(*zip(*points), "-", label=t)
    ax1.set(xlabel="optimizer step", ylabel="mean train loss", title="training loss", yscale="log")
    if train_log:
        ax1.legend()
    for key in (*METRIC_NAMES.values(), "overall"):
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax2.plot(*zip(*points), "o-", label=key)
    ax2.set(xlabel="optimizer step", ylabel="dev metric", title="dev metrics")
    if history:
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
