"""``python manage.py conveyor_worker``: a conveyor worker for this project's Django tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):  # type: ignore[misc]
    help = "Run a conveyor worker for the Django tasks of a ConveyorBackend until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", help="TASKS alias (default: the first ConveyorBackend)")
        parser.add_argument("-Q", "--queues", help="queues to serve (default: the backend's)")
        parser.add_argument("-c", "--concurrency", type=int, default=8)
        parser.add_argument("--pool", choices=["thread", "async"], default="thread")
        parser.add_argument("--no-schedule", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        from conveyor.integrations.django.running import worker_app

        try:
            app, queues = worker_app(options["backend"])
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if options["queues"]:
            queues = [q for q in options["queues"].split(",") if q]
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        self.stderr.write(f"conveyor worker: {app.settings.url}, queues {','.join(queues)}")
        worker = app.worker(
            queues=queues,
            concurrency=options["concurrency"],
            pool=options["pool"],
            schedule=not options["no_schedule"],
        )
        worker.run()
