"""The self-test job: a small MLP on scikit-learn's bundled digits, proving the training pipeline end to end."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from ml.device import pick_device


class SelfTestCrash(RuntimeError):
    """The crash asked for with `fail_at_epoch`, so that failure handling can be exercised on demand."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    accuracy: float


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def train_selftest(
    *,
    epochs: int = 5,
    hidden: int = 64,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "",
    fail_at_epoch: int | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> dict:
    """Train for `epochs`, calling `on_epoch` after each with the training loss and held-out accuracy."""
    torch.manual_seed(seed)
    dev = pick_device(device)
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.25, random_state=seed, stratify=y
    )
    as_x = lambda a: torch.tensor(a, dtype=torch.float32, device=dev)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long, device=dev)  # noqa: E731
    xt, yt, xv, yv = as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)

    model = mlp(xt.shape[1], hidden, 10).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    accuracy = 0.0
    loss_value = float("nan")
    for epoch in range(1, epochs + 1):
        if fail_at_epoch is not None and epoch == fail_at_epoch:
            raise SelfTestCrash(f"self-test crashed at epoch {epoch}, as asked")
        model.train()
        order = torch.randperm(len(xt), generator=generator).to(dev)
        total = 0.0
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        loss_value = total / len(xt)
        model.eval()
        with torch.no_grad():
            accuracy = (model(xv).argmax(dim=1) == yv).float().mean().item()
        if on_epoch is not None:
            on_epoch(EpochReport(epoch=epoch, epochs=epochs, loss=loss_value, accuracy=accuracy))
    return {
        "epochs": epochs,
        "final_loss": round(loss_value, 6),
        "test_accuracy": round(accuracy, 6),
        "train_samples": len(xt),
        "test_samples": len(xv),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(dev),
    }
