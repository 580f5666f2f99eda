from celery import shared_task


@shared_task(name="jobs.run", bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def job_run(self, job_id: int) -> None:
    from platform_site.jobs.services import job_execute

    job_execute(job_id=job_id, worker=self.request.hostname or "unknown", task_id=self.request.id)


@shared_task(name="jobs.sweep_stale", ignore_result=True)
def job_sweep_stale() -> dict[str, int]:
    from platform_site.jobs.services import job_sweep_stale as sweep

    return sweep()
