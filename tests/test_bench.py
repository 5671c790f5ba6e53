"""bench/run.py's pure helpers: parsing, environ building, ratios, goals and the CI guard.

No servers and no wrk: these run in milliseconds, the benchmark itself is run by hand and by CI.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


run = _load()

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  612.00us  12.00ms   90.00%
    Req/Sec    45.00k     2.00k   48.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    1.80ms
     99%    3.21ms
  135000 requests in 3.00s, 12.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
Requests/sec:  45000.12
Transfer/sec:      4.00MB
"""


def result(server, workload, round_no=1, **numbers):
    numbers.setdefault("rps", 1000.0)
    return run.Result(server, workload, round_no=round_no, **numbers)


def test_parse_wrk():
    parsed = run.parse_wrk(WRK_OUTPUT)
    assert parsed.requests == 135000
    assert parsed.rps == pytest.approx(45000.12)
    assert parsed.p50_ms == pytest.approx(0.85)
    assert parsed.p99_ms == pytest.approx(3.21)
    assert parsed.problems.startswith("Socket errors: connect 0, read 3")


def test_gunicorn_flavours():
    workload = run.WORKLOADS["django"]
    sync = run.SERVERS["gunicorn"].argv(8000, workload)
    gthread = run.SERVERS["gunicorn-gthread"].argv(8000, workload)
    assert "-k" not in sync
    assert gthread[gthread.index("-k") + 1] == "gthread"
    assert gthread[gthread.index("--threads") + 1] == "4"
    assert gthread[gthread.index("-w") + 1] == str(run.WORKERS)
    assert gthread[-1] == sync[-1] == "testproject.wsgi:application"


def test_app_environ_get_with_query_and_headers():
    environ = run.app_environ(run.WORKLOADS["download-100mb"], port=8123)
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/download/"
    assert environ["QUERY_STRING"] == "mb=100"
    assert environ["HTTP_HOST"] == "127.0.0.1:8123"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert "CONTENT_LENGTH" not in environ
    assert all(isinstance(v, str) for v in environ.values())
    assert run.app_environ(run.WORKLOADS["django-close"])["HTTP_CONNECTION"] == "close"


def test_app_environ_post_body():
    environ = run.app_environ(run.WORKLOADS["post-1mb"])
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["CONTENT_LENGTH"] == str(run.MIB)
    assert environ["CONTENT_TYPE"] == run.POST_CONTENT_TYPE


def test_app_cost_shared_only_by_identical_requests():
    key = run.app_cost_key
    assert key(run.WORKLOADS["django"]) == key(run.WORKLOADS["slow-clients"])
    assert key(run.WORKLOADS["django"]) != key(run.WORKLOADS["django-close"])
    assert key(run.WORKLOADS["bare"]) != key(run.WORKLOADS["django"])


def test_round_ratios_pair_rounds_and_skip_gaps():
    results = [
        result("prodserve", "bare", 1, cpu_us_per_req=30.0),
        result("granian", "bare", 1, cpu_us_per_req=20.0),
        result("prodserve", "bare", 2, cpu_us_per_req=20.0),
        result("granian", "bare", 2, error="boom"),
        result("prodserve", "bare", 3, cpu_us_per_req=25.0),
        result("granian", "bare", 3, cpu_us_per_req=25.0),
    ]
    assert run.round_ratios(results, "prodserve", "granian", "bare", "cpu") == [1.5, 1.0]
    assert run.median_ratio(results, "prodserve", "granian", "bare", "cpu") == 1.25
    assert run.median_ratio(results, "prodserve", "gunicorn", "bare", "cpu") is None


def test_ratio_against_app_and_self():
    costs = {"django": run.AppCost(cpu_us_per_req=100.0, calls=10)}
    results = [
        result("prodserve", "django", cpu_us_per_req=110.0),
        result("prodserve", "slow-clients", rps=950.0, baseline_rps=1000.0),
    ]
    assert run.median_ratio(results, "prodserve", run.APP, "django", "cpu", costs) == 1.1
    assert run.median_ratio(results, "prodserve", run.APP, "json", "cpu", costs) is None
    assert run.median_ratio(results, "prodserve", run.SELF, "slow-clients", "kept") == 0.95


def test_goals_verdicts():
    goal = run.Goal(
        "Django hello",
        (
            run.Check("cpu", "django", "gunicorn", "≤", 0.5),
            run.Check("rps", "django", "gunicorn", "≥", 2.0),
        ),
    )
    passing = [
        result("prodserve", "django", rps=9000.0, cpu_us_per_req=150.0),
        result("gunicorn", "django", rps=4000.0, cpu_us_per_req=400.0),
    ]
    assert run.evaluate_goal(goal, passing).verdict == "PASS"
    slow = [passing[0], result("gunicorn", "django", rps=5000.0, cpu_us_per_req=400.0)]
    evaluated = run.evaluate_goal(goal, slow)
    assert evaluated.verdict == "FAIL"
    assert "1.80 (target ≥ 2.00)" in evaluated.measured
    assert run.evaluate_goal(goal, passing[:1]).verdict == "not measured"


def test_goals_table_has_one_row_per_goal():
    lines = run.fmt_goals([], {})
    assert len(lines) == 2 + len(run.GOALS)
    assert all(line.endswith("| not measured |") for line in lines[2:])
    assert {check.op for goal in run.GOALS for check in goal.checks} <= set(run.OPS)
    assert {check.metric for goal in run.GOALS for check in goal.checks} <= set(run.METRICS)


def test_guard_uses_the_median_round(capsys):
    results = []
    for round_no, ratio in enumerate((3.0, 1.2, 1.4), start=1):
        results.append(result("prodserve", "bare", round_no, cpu_us_per_req=20.0 * ratio))
        results.append(result("granian", "bare", round_no, cpu_us_per_req=20.0))
    assert run.check_guard(results, 1.5) == 0
    out = capsys.readouterr().out
    assert out.count("guard round") == 3
    assert "1.40 (limit 1.50) OK" in out
    assert run.check_guard(results, 1.3) == 1
    assert run.check_guard(results[:1], 1.5) == 2


def test_quick_defaults_and_guard_servers():
    plan, args = run.parse_args(["--quick", "--guard", "1.5"])
    assert plan.rounds == 3
    assert plan.servers == ["prodserve", "granian"]
    assert plan.workloads == ["bare"]
    assert args.output is None
    plan, _ = run.parse_args(["--servers", "gunicorn-gthread", "--workloads", "db", "--guard", "2"])
    assert plan.rounds == 1
    assert set(plan.servers) == {"gunicorn-gthread", "prodserve", "granian"}
    assert plan.workloads == ["bare", "db"]
