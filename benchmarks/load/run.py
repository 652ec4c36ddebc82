"""Load test: the platform as `make run` starts it, under patients, clinicians and auditors, for a set time.

    python -m benchmarks.load.run [--users 50] [--duration 120] [--patients 200]      (make load)

1. Starts scripts/run.sh exactly as `make run` does (gunicorn, the custodian and compute Celery workers,
   demo data seeded) on the embedded defaults (SQLite, the embedded ledger, the filesystem broker), in a
   fresh temporary HEALTH_PLATFORM_VAR_DIR and on a free port of 127.0.0.1 only. Environment variables
   that run.sh reads (DATABASE_URL, CELERY_BROKER_URL, WEB_WORKERS, ...) pass through, so the same test
   runs against PostgreSQL and Redis when they are set.
2. Gives the demo clinician, the demo auditor and as many demo patients as there are patient users a
   password of the test's own (the demo's printed passwords are not read).
3. Runs Locust headless for --duration seconds with --users users (30 patients : 12 clinicians :
   8 auditors; benchmarks/load/locustfile.py says what each does). Clinicians request analyses
   throughout, so the workers gate, log, encrypt and score while the portal and API are under load.
4. Waits (at most --drain seconds) for the analyses requested during the test to finish, then prints
   p50/p95 per endpoint class and the error count, the analyses by status and the web and worker
   errors found in their logs; writes benchmarks/results/load_<engine>.json.

Exit status 1 if any request failed, any analysis failed or any 5xx or worker error was logged.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import free_port, stop_group
from health_platform.quickstart import wait_for_page

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
CLASS_ORDER = (
    "login",
    "patient portal",
    "patient API",
    "patient consent change",
    "clinician portal",
    "clinician API",
    "clinician submit",
    "auditor portal",
    "auditor API",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--duration", type=int, default=120, help="seconds of load")
    parser.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second")
    parser.add_argument("--patients", type=int, default=200, help="demo patients per dataset (make run's default)")
    parser.add_argument("--drain", type=int, default=180, help="seconds to wait for analyses still running")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="health-platform-load-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    platform_log = var_dir / "platform.log"
    environment = {**os.environ, "HEALTH_PLATFORM_VAR_DIR": str(var_dir), "PORT": str(port)}
    environment["DEMO_PATIENTS"] = str(args.patients)
    print(f"==> starting the platform as make run does (scripts/run.sh) on {base_url}; logs in {var_dir}")
    with platform_log.open("wb") as log_file:
        platform = subprocess.Popen(
            [str(REPO / "scripts" / "run.sh")],
            cwd=REPO,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped whole at the end
        )
    failed = True
    try:
        _wait_until_serving(base_url, platform, platform_log)
        os.environ["HEALTH_PLATFORM_VAR_DIR"] = str(var_dir)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
        import django

        django.setup()
        accounts_path = var_dir / "load-accounts.json"
        patient_users = round(args.users * 30 / 50) + 1
        accounts_path.write_text(json.dumps(_accounts(patient_users=patient_users)))
        accounts_path.chmod(0o600)
        engine = _database_engine()
        started_at = _now()
        summary_path = var_dir / "load-summary.json"
        print(
            f"==> {args.users} users for {args.duration} s (30 patients : 12 clinicians : 8 auditors per 50), "
            f"database {engine}"
        )
        locust = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "locust"),
                "-f",
                str(REPO / "benchmarks" / "load" / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                "--spawn-rate",
                str(args.spawn_rate),
                "--run-time",
                f"{args.duration}s",
                "--stop-timeout",
                "30",
                "--host",
                base_url,
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            cwd=REPO,
            env={**os.environ, "LOAD_ACCOUNTS": str(accounts_path), "LOAD_SUMMARY": str(summary_path)},
            check=False,
            stdout=(var_dir / "locust.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        ended_at = _now()
        analyses_at_end = _analyses_by_status(since=started_at)
        drain_started = time.monotonic()
        drained = _drain(since=started_at, seconds=args.drain)
        drain_seconds = round(time.monotonic() - drain_started, 1)
        summary = json.loads(summary_path.read_text())
        report = {
            "command": " ".join([".venv/bin/python -m benchmarks.load.run", *sys.argv[1:]]),
            "database": engine,
            "broker": os.environ.get("CELERY_BROKER_URL", "filesystem://").split("://")[0],
            "web_workers": int(os.environ.get("WEB_WORKERS", "2")),
            "users": args.users,
            "duration_seconds": args.duration,
            "started_at": started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
            "classes": {name: row for name, row in summary["rows"].items() if ":" not in name},
            "endpoints": {name: row for name, row in summary["rows"].items() if ":" in name},
            "error_kinds": summary["error_kinds"],
            "analyses_when_load_ended": analyses_at_end,
            "analyses_after_drain": drained,
            "drain_seconds": drain_seconds,
            "web_5xx": _count_5xx(var_dir / "logs" / "web.log"),
            "worker_errors": _worker_errors(var_dir),
            "locust_exit_code": locust.returncode,
        }
        _print(report)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"load_{engine}.json").write_text(json.dumps(report, indent=2) + "\n")
        errors = sum(row["errors"] for row in report["classes"].values())
        failed = bool(
            errors
            or report["web_5xx"]
            or report["worker_errors"]
            or drained.get("failed")
            or set(drained) - {"completed"}
            or locust.returncode not in (0,)
        )
        print(
            f"==> {'FAILED' if failed else 'passed'}: {errors} request errors; figures in {RESULTS}/load_{engine}.json"
        )
    finally:
        _stop(platform)
        if args.keep or failed:
            print(f"==> logs, database and ledger kept in {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    return 1 if failed else 0


def _wait_until_serving(base_url: str, platform: subprocess.Popen, log_path: Path, timeout: float = 900) -> None:
    """Wait for the sign-in page to answer (setup, migrations and seeding come first)."""
    if not wait_for_page(
        url=f"{base_url}/accounts/login/", timeout=timeout, alive=lambda: platform.poll() is None, interval=1
    ):
        raise SystemExit(f"the platform did not start in {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def _accounts(*, patient_users: int) -> dict:
    """One password of this test for the demo clinician, the demo auditor and `patient_users` demo patients.

    Hashed once and stored for all: the web process still checks it the normal way at every sign-in.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from records.models import Patient

    password = secrets.token_urlsafe(18)
    users = get_user_model().objects
    patients = list(
        Patient.objects.filter(user__isnull=False)
        .order_by("user__username")
        .values_list("user__username", flat=True)[:patient_users]
    )
    names = ["demo-clinician", "demo-auditor", *patients]
    users.filter(username__in=names).update(password=make_password(password), is_active=True)
    clinician = users.get(username="demo-clinician")  # registered as a grantee by seed_demo
    staff = {name: _staff_second_factor(users.get(username=name)) for name in ("demo-clinician", "demo-auditor")}
    return {
        "clinician": {"username": "demo-clinician", "password": password, **staff["demo-clinician"]},
        "clinician_grantee": clinician.clinician_profile.grantee_id,
        "auditor": {"username": "demo-auditor", "password": password, **staff["demo-auditor"]},
        "patients": [{"username": name, "password": password} for name in patients],
    }


def _staff_second_factor(user: Any) -> dict[str, str]:
    """Enrol a member of staff with an authenticator secret of this test's and give them a personal API token, as
    they would make one in the portal (/accounts/tokens/): a staff password alone yields no token."""
    from rest_framework.authtoken.models import Token

    from accounts.services import second_factors_remove, totp_enrol

    second_factors_remove(user=user)
    secret = totp_enrol(user=user)
    Token.objects.filter(user=user).delete()
    return {"totp_secret": secret, "token": Token.objects.create(user=user).key}


def _database_engine() -> str:
    from django.db import connection

    return connection.vendor


def _now():
    from django.utils import timezone

    return timezone.now()


def _analyses_by_status(*, since) -> dict[str, int]:
    from django.db.models import Count

    from analytics.models import AnalysisRequest

    rows = AnalysisRequest.objects.filter(created_at__gte=since).values("status").annotate(count=Count("id"))
    return {row["status"]: row["count"] for row in rows}


def _drain(*, since, seconds: int) -> dict[str, int]:
    """Wait until every analysis requested since `since` has finished (completed or failed), or time is up."""
    from analytics.models import AnalysisStatus

    finished = {AnalysisStatus.COMPLETED, AnalysisStatus.FAILED}
    deadline = time.monotonic() + seconds
    while True:
        counts = _analyses_by_status(since=since)
        if set(counts) <= finished or time.monotonic() > deadline:
            return counts
        time.sleep(2)


def _count_5xx(web_log: Path) -> int:
    """5xx answers in gunicorn's access log (run.sh writes it to the var folder's logs/web.log)."""
    count = 0
    for line in web_log.read_text(errors="replace").splitlines():
        parts = line.split('" ')
        if len(parts) >= 2 and parts[1][:1] == "5" and parts[1][:3].isdigit():
            count += 1
    return count


def _worker_errors(var_dir: Path) -> list[str]:
    """ERROR lines (task failures, retries given up, crashes) in the Celery workers' logs (run.sh: logs/)."""
    found = []
    for name in ("celery-custodian.log", "celery-compute.log"):
        path = var_dir / "logs" / name
        if path.exists():
            found += [line[:300] for line in path.read_text(errors="replace").splitlines() if " ERROR" in line]
    return found


def _print(report: dict) -> None:
    classes = report["classes"]
    print()
    print(
        f"{report['users']} users, {report['duration_seconds']} s, database {report['database']}, "
        f"broker {report['broker']}, {report['web_workers']} gunicorn workers"
    )
    print(
        f"{'endpoint class':<24} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    ordered = [name for name in CLASS_ORDER if name in classes] + sorted(set(classes) - set(CLASS_ORDER))
    for name in ordered:
        row = classes[name]
        print(
            f"{name:<24} {row['requests']:>8} {row['errors']:>6} {row['p50_ms']:>8} {row['p95_ms']:>8} "
            f"{row['p99_ms']:>8} {row['max_ms']:>8}"
        )
    total_requests = sum(row["requests"] for row in classes.values())
    total_errors = sum(row["errors"] for row in classes.values())
    print(f"{'all':<24} {total_requests:>8} {total_errors:>6}")
    print(f"analyses requested during the load, by status when it ended: {report['analyses_when_load_ended']}")
    print(f"the same analyses {report['drain_seconds']} s after the load ended: {report['analyses_after_drain']}")
    print(f"5xx in the web log: {report['web_5xx']}; ERROR lines in the worker logs: {len(report['worker_errors'])}")
    for kind, count in report["error_kinds"].items():
        print(f"  {count} x {kind}")
    for line in report["worker_errors"][:10]:
        print(f"  worker: {line}")


def _stop(platform: subprocess.Popen) -> None:
    if platform.poll() is None:
        stop_group(platform, timeout=30)


if __name__ == "__main__":
    sys.exit(main())
