"""Demo data for the model marketplace: alice's model trained on her air-quality dataset (so a share of every
call flows to that data), carol's model distilled from it (so a share flows to alice's model too), and bob with
a prepaid quota of carol's model and a few calls made, receipted and settled.

The jobs run here, in-process (`job_execute`, the code a worker runs), so the models are ready when the site
starts.
"""

from django.contrib.auth import get_user_model

from marketplace.models import Dataset
from models_market import services
from models_market.models import ModelAsset, ModelVersion
from platform_site.jobs.services import job_execute


def _distilled(parent: ModelVersion, rows: int = 600):
    """carol's model: a smaller model taught by alice's, on inputs drawn around the parent's schema (the
    parent's predictions are its labels: distillation needs no rows of anyone's data)."""
    import numpy as np

    from ml.features import FeatureSchema
    from ml.supervised import model_from_bytes, model_to_bytes, predict, train

    schema = FeatureSchema.from_json(parent.schema)
    rng = np.random.default_rng(7)
    inputs = []
    for _ in range(rows):
        row = {}
        for column in parent.schema["columns"]:
            if column["type"] == "numeric":
                row[column["name"]] = float(column["center"] + column["scale"] * rng.normal())
            else:
                row[column["name"]] = rng.choice(column["levels"]) if column["levels"] else ""
        inputs.append(row)
    with parent.artifact.open("rb") as fh:
        teacher = model_from_bytes(fh.read())
    labels = [out["prediction"] for out in predict(teacher, schema, inputs)]
    classes = schema.classes
    y = np.array([classes.index(label) for label in labels])
    student = train(schema.rows_matrix(inputs), y, "classification", "logistic_regression", {"C": 0.5},
                    schema=schema).model  # fmt: skip
    return model_to_bytes(student)[1]


def seed(*, stdout) -> None:
    if ModelAsset.objects.exists():
        stdout.write("models: already seeded")
        return
    users = get_user_model().objects
    alice, bob, carol = (users.get(username=name) for name in ("alice", "bob", "carol"))
    air = Dataset.objects.filter(owner=alice, title__startswith="European city air").first()
    if air is None or air.current_version is None:
        stdout.write("models: skipped (the marketplace demo has no air-quality dataset)")
        return

    job = services.model_train_submit(
        user=alice, dataset_version=air.current_version,
        params={"name": "City from air quality", "target": "city", "task": "classification",
                "algorithm": "logistic_regression", "royalty_bp": 500,
                "description": "Guesses which of five cities an hourly air-quality reading comes from."},
    )  # fmt: skip
    job_execute(job_id=job.pk, worker="demo")
    parent = ModelVersion.objects.get(job=job)
    services.version_card_update(
        version=parent, actor=alice,
        intended_use="Teaching and demos: sorting sensor readings by city when the label was lost.",
        limitations="Five cities only; readings from elsewhere get one of the five names anyway.",
    )  # fmt: skip
    services.token_offer_set(
        token=parent.token, actor=alice, price_perpetual=2_000, price_timed=800, timed_days=30,
        price_quota=300, quota_calls=100, price_per_call=5, listed=True,
    )  # fmt: skip

    # carol licenses alice's model and distils a smaller one from it: the lineage pays alice on every call.
    services.license_purchase(buyer=carol, token=parent.token, kind="perpetual")
    child = services.model_upload(
        user=carol, name="City from air quality (small)", task="classification",
        description="A smaller model distilled from alice's.", artifact=_distilled(parent), schema=parent.schema,
        card={"intended_use": "The same as its parent, cheaper per call.", "limitations": "Less accurate."},
        parents=[(parent, "distilled")], royalty_bp=300,
    )  # fmt: skip
    job_execute(job_id=child.job_id, worker="demo")
    child.refresh_from_db()
    services.token_offer_set(
        token=child.token, actor=carol, price_perpetual=1_000, price_quota=200, quota_calls=50, price_per_call=2,
        listed=True,
    )  # fmt: skip

    # bob prepays 50 calls of carol's model and makes three; they are settled at once for the demo.
    services.license_purchase(buyer=bob, token=child.token, kind="quota")
    rows = [{c["name"]: c.get("center", c.get("levels", [""])[0]) for c in parent.schema["columns"]}]
    for _ in range(3):
        services.predict_call(user=bob, version=child, rows=rows)
    services.settle_pending(limit=100)
    stdout.write(
        f"models: {parent} (token #{parent.token.pk}) and {child} (token #{child.token.pk}); bob made 3 calls"
    )
