import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from decimal import Decimal, InvalidOperation

from django.db import migrations, models

# The job parameters that are not the analysis's options: they have columns of their own.
NOT_OPTIONS = ("analysis", "version", "private", "epsilon")


def _record(job, versions, licenses):
    """The Analysis row for one old analysis job, or None when its parameters cannot be read."""
    params = job.params
    if not isinstance(params, dict):
        return None
    kind, version_id = params.get("analysis"), params.get("version")
    if not isinstance(kind, str) or not 0 < len(kind) <= 40:
        return None
    if isinstance(version_id, bool) or not isinstance(version_id, int) or version_id not in versions:
        return None
    private = params.get("private") is True
    epsilon = license_id = None
    if private:
        try:
            epsilon = Decimal(str(params.get("epsilon"))).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            return None
        if not epsilon.is_finite() or not 0 < epsilon < 10_000:
            return None
        # The compute-only licence of this user for this dataset paid for it (one per tier, a constraint).
        license_id = licenses.get((job.owner_id, versions[version_id]))
    result = job.result if isinstance(job.result, dict) else {}
    digest, seq = result.get("result_sha256"), result.get("entry_seq")
    return {
        "job_id": job.pk, "version_id": version_id, "user_id": job.owner_id, "license_id": license_id,
        "kind": kind, "options": {k: v for k, v in params.items() if k not in NOT_OPTIONS}, "private": private,
        "epsilon": epsilon,
        "result_sha256": digest if isinstance(digest, str) and len(digest) == 64 else "",
        "entry_seq": seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**63 else None,
        "created_at": job.created_at,
    }


def record_analyses(apps, schema_editor):
    """An Analysis row for every marketplace.analysis job that has none; a job whose parameters cannot be read
    (no version, an unknown one, no kind, a private one without its ε) is skipped, and keeps only its job."""
    Job = apps.get_model("jobs", "Job")
    Analysis = apps.get_model("marketplace", "Analysis")
    DatasetVersion = apps.get_model("marketplace", "DatasetVersion")
    License = apps.get_model("marketplace", "License")
    versions = dict(DatasetVersion.objects.values_list("pk", "dataset_id"))
    licenses = {
        (row["buyer_id"], row["dataset_id"]): row["pk"]
        for row in License.objects.filter(tier="compute").values("pk", "buyer_id", "dataset_id")
    }
    jobs = Job.objects.filter(kind="marketplace.analysis", analysis__isnull=True).order_by("pk")
    batch = []
    for job in jobs.iterator(chunk_size=1000):
        fields = _record(job, versions, licenses)
        if fields is not None:
            batch.append(Analysis(**fields))
        if len(batch) >= 1000:
            Analysis.objects.bulk_create(batch)
            batch = []
    Analysis.objects.bulk_create(batch)


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0002_job_runner_pid'),
        ('marketplace', '0005_browse_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Analysis',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(max_length=40)),
                ('options', models.JSONField(default=dict)),
                ('private', models.BooleanField(default=False)),
                ('epsilon', models.DecimalField(blank=True, decimal_places=2, max_digits=6, null=True)),
                ('result_sha256', models.CharField(blank=True, max_length=64)),
                ('entry_seq', models.BigIntegerField(blank=True, null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('job', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='analysis', to='jobs.job')),
                ('license', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='analyses', to='marketplace.license')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='data_analyses', to=settings.AUTH_USER_MODEL)),
                ('version', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='analyses', to='marketplace.datasetversion')),
            ],
            options={
                'verbose_name_plural': 'analyses',
                'ordering': ['-created_at', '-pk'],
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('epsilon__isnull', True), ('private', False)), models.Q(('epsilon__gt', 0), ('private', True)), _connector='OR'), name='analysis_epsilon_iff_private')],
            },
        ),
        migrations.RunPython(record_analyses, migrations.RunPython.noop),
    ]
