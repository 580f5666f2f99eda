from django.contrib import admin

from platform_site.jobs.models import Job, WorkerHeartbeat


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "owner", "status", "progress", "queue", "attempts", "worker", "created_at"]
    list_filter = ["status", "kind", "queue"]
    search_fields = ["id", "kind", "owner__username", "celery_task_id", "error"]
    list_select_related = ["owner"]
    readonly_fields = [
        "metrics",
        "result",
        "celery_task_id",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    ]
    date_hierarchy = "created_at"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ["hostname", "queues", "pid", "started_at", "last_seen"]
    search_fields = ["hostname"]
