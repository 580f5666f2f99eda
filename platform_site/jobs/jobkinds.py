"""The built-in job kind: the ML self-test that health checks, tests and CI use to prove the pipeline."""

from django.conf import settings
from rest_framework import serializers

from platform_site.jobs.registry import Presentation, job_kind


class SelfTestParams(serializers.Serializer):
    epochs = serializers.IntegerField(min_value=1, max_value=50, default=5)
    hidden = serializers.IntegerField(min_value=4, max_value=512, default=64)
    lr = serializers.FloatField(min_value=1e-5, max_value=1.0, default=0.01)
    fail_at_epoch = serializers.IntegerField(
        min_value=1,
        max_value=50,
        required=False,
        allow_null=True,
        default=None,
        help_text="Crash on purpose at this epoch, to see how a failed job looks.",
    )


def present_selftest(jobs) -> dict[int, Presentation]:
    """Its outcome in figures: the accuracy on held-out digits, the final loss, the size of the run."""
    shown = {}
    for job in jobs:
        result = job.result if isinstance(job.result, dict) else {}
        lines = []
        if isinstance(result.get("test_accuracy"), int | float):
            lines.append(("Test accuracy", f"{result['test_accuracy']:.1%}"))
        if isinstance(result.get("final_loss"), int | float):
            lines.append(("Final loss", f"{result['final_loss']:.4f}"))
        if "epochs" in result:
            lines.append(("Epochs", str(result["epochs"])))
        if "train_samples" in result and "test_samples" in result:
            lines.append(
                ("Digits", f"{result['train_samples']:,} to train, {result['test_samples']:,} to test")
            )
        if isinstance(result.get("parameters"), int):
            lines.append(("Parameters", f"{result['parameters']:,}"))
        if result.get("device"):
            lines.append(("Device", str(result["device"])))
        shown[job.pk] = Presentation(lines=lines)
    return shown


@job_kind(
    "ml.selftest",
    label="ML self-test (MLP on digits)",
    queue="ml",
    params=SelfTestParams,
    present=present_selftest,
)
def run_selftest(*, job, reporter) -> dict:
    from ml.selftest import train_selftest

    def on_epoch(report) -> None:
        reporter(
            report.epoch / report.epochs,
            message=f"epoch {report.epoch}/{report.epochs}",
            metrics={
                "step": report.epoch,
                "loss": round(report.loss, 6),
                "accuracy": round(report.accuracy, 6),
            },
        )

    reporter(0.0, message="loading digits")
    return train_selftest(**job.params, device=settings.ML_DEVICE, on_epoch=on_epoch)
