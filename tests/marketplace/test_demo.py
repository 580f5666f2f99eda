"""The marketplace's demo data: listings a newcomer can browse, buy and analyse on `make run`."""

from io import StringIO

import pytest
from django.core.management import call_command

from marketplace import analyses
from marketplace.models import Dataset, License
from platform_site.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_the_demo_lists_three_ready_datasets_with_purchases_and_a_finished_analysis():
    call_command("demo", "--seed", "--force", stdout=StringIO())

    listings = Dataset.objects.filter(owner__username="alice", status=Dataset.Status.PUBLISHED)
    assert listings.count() == 3
    assert all(d.current_version.stats["rows"] >= 3_000 for d in listings)
    assert set(License.objects.filter(buyer__username="bob").values_list("tier", flat=True)) == {
        "download",
        "compute",
    }
    analysis = Job.objects.get(kind="marketplace.analysis", owner__username="bob")
    assert analysis.status == "succeeded", analysis.error
    assert analyses.get(analysis.params["analysis"]).charts(analysis.result["result"]), (
        "the result can be charted"
    )
    call_command("verify_ledger", "--quiet")

    call_command("demo", "--seed", "--force", stdout=StringIO())
    assert Dataset.objects.count() == 3 and Job.objects.filter(kind="marketplace.analysis").count() == 1
