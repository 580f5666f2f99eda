"""`python manage.py simulate_federation --parties N [--non-iid ALPHA] [--byzantine K] [--rounds R]
[--federation ID] [--wait]`: N simulated parties (see federation/simulation.py) train on shares of
scikit-learn's digits through the real API, one Celery task per party step on the `ml` queue. Without
--federation, a coordinator `sim-coordinator` creates a digits federation first. Without --wait the command
returns once the parties are queued (a worker runs them: `make run` starts one); with it, it prints each
round as it is aggregated and exits when the federation ends (non-zero if it failed)."""

import time

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run a federation with N simulated parties on the digits data set (Celery tasks, the real client)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--parties", type=int, required=True, help="how many simulated parties")
        parser.add_argument("--non-iid", type=float, default=None, metavar="ALPHA",
                            help="share the rows by a Dirichlet(ALPHA) draw per label (default: IID)")  # fmt: skip
        parser.add_argument("--byzantine", type=int, default=0, metavar="K",
                            help="the first K parties send sign-flipped x10 updates")  # fmt: skip
        parser.add_argument("--rounds", type=int, default=10)
        parser.add_argument("--federation", type=int, default=None, metavar="ID",
                            help="join this (digits) federation instead of creating one")  # fmt: skip
        parser.add_argument("--strategy", default="fedavg", help="for a new federation (fedavg, median, ...)")
        parser.add_argument("--secure-aggregation", action="store_true", help="for a new federation")
        parser.add_argument("--seed", type=int, default=0, help="the split's seed")
        parser.add_argument("--wait", action="store_true", help="wait for the end, printing each round")
        parser.add_argument("--timeout", type=float, default=1800, help="seconds --wait waits at most")

    def handle(self, *args, **opts) -> None:
        from federation.models import Federation
        from federation.simulation import _user, digits_federation_create, parties_dispatch, parties_enrol

        n, k = opts["parties"], opts["byzantine"]
        if not 1 <= n <= 100:
            raise CommandError("--parties must be from 1 to 100")
        if not 0 <= k <= n:
            raise CommandError("--byzantine must be from 0 to --parties")
        if opts["non_iid"] is not None and not opts["non_iid"] > 0:
            raise CommandError("--non-iid ALPHA must be positive")
        if opts["federation"] is not None:
            federation = Federation.objects.filter(pk=opts["federation"]).first()
            if federation is None:
                raise CommandError(f"no federation {opts['federation']}")
            coordinator = federation.coordinator
        else:
            coordinator = _user("sim-coordinator")
            try:
                federation = digits_federation_create(
                    coordinator=coordinator,
                    name=f"Digits, {n} simulated parties" + (f", {k} byzantine" if k else ""),
                    rounds=opts["rounds"],
                    min_parties=n,
                    strategy=opts["strategy"],
                    secure_aggregation=opts["secure_aggregation"],
                )
            except Exception as exc:  # a setting the platform refuses: its message
                raise CommandError(str(exc)) from exc
        try:
            parties = parties_enrol(
                federation=federation, parties=n, alpha=opts["non_iid"], byzantine=k, seed=opts["seed"],
                admit_as=coordinator,
            )  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        parties_dispatch(federation_id=federation.pk, parties=n)
        self.stdout.write(
            f"federation {federation.pk}: {n} simulated parties {parties} queued"
            + (f" (the first {k} byzantine)" if k else "")
        )
        if opts["wait"]:
            self._wait(federation.pk, opts["timeout"])

    def _wait(self, federation_id: int, timeout: float) -> None:
        from federation.models import Federation, Round

        deadline, shown = time.monotonic() + timeout, set()
        while time.monotonic() < deadline:
            federation = Federation.objects.get(pk=federation_id)
            for rnd in (
                Round.objects.filter(federation_id=federation_id).exclude(metrics=None).order_by("number")
            ):
                if rnd.number not in shown and rnd.metrics:
                    shown.add(rnd.number)
                    figures = ", ".join(
                        f"{k} {v:.4f}" for k, v in rnd.metrics.items() if isinstance(v, float)
                    )
                    self.stdout.write(f"round {rnd.number}: {rnd.status}; {figures}")
            if federation.status == Federation.Status.FINISHED:
                self.stdout.write(f"federation {federation_id} finished")
                return
            if federation.status == Federation.Status.FAILED:
                raise CommandError(f"federation {federation_id} failed: {federation.error}")
            time.sleep(1)
        raise CommandError(f"federation {federation_id} has not finished after {timeout:.0f} s")
