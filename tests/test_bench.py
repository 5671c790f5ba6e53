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
    costs = {1: {"django": run.AppCost(cpu_us_per_req=100.0, calls=10)}}
    results = [
        result("prodserve", "django", cpu_us_per_req=110.0),
        result("prodserve", "slow-clients", rps=950.0, baseline_rps=1000.0),
    ]
    assert run.median_ratio(results, "prodserve", run.APP, "django", "cpu", costs) == 1.1
    assert run.median_ratio(results, "prodserve", run.APP, "json", "cpu", costs) is None
    assert run.median_ratio(results, "prodserve", run.SELF, "slow-clients", "kept") == 0.95


def app_costs(workload, *per_round):
    """{round: {workload: AppCost}}; a per-round value of None is a failed measurement."""
    return {
        round_no: {
            workload: run.AppCost(error="boom")
            if cpu is None
            else run.AppCost(cpu_us_per_req=cpu, calls=1000 * round_no)
        }
        for round_no, cpu in enumerate(per_round, start=1)
    }


def test_app_ratios_pair_each_round_with_its_own_app_cost():
    costs = app_costs("django", 100.0, 200.0, None, 150.0)
    results = [
        result("prodserve", "django", round_no, cpu_us_per_req=cpu)
        for round_no, cpu in enumerate((110.0, 240.0, 500.0, 150.0), start=1)
    ]
    assert run.app_cpu_by_round(costs, "django") == {1: 100.0, 2: 200.0, 4: 150.0}
    # Round 3 has no app cost, so no ratio; the others divide by their own round's app cost.
    ratios = run.round_ratios(results, "prodserve", run.APP, "django", "cpu", costs)
    assert ratios == pytest.approx([1.1, 1.2, 1.0])
    assert run.median_ratio(results, "prodserve", run.APP, "django", "cpu", costs) == 1.1
    # A round whose server cell failed drops out too, while the app cost stays in the table.
    results[1] = result("prodserve", "django", 2, error="boom")
    ratios = run.round_ratios(results, "prodserve", run.APP, "django", "cpu", costs)
    assert ratios == pytest.approx([1.1, 1.0])


def test_app_cost_table_median_and_per_round_values():
    plan = run.Plan(["prodserve", "granian"], ["django"], duration=1, warmup=0, connections=1)
    costs = app_costs("django", 100.0, 200.0, None, 150.0)
    results = [
        result("prodserve", "django", round_no, cpu_us_per_req=cpu)
        for round_no, cpu in enumerate((110.0, 240.0, 500.0, 150.0), start=1)
    ]
    header, rule, row = run.fmt_app_costs(results, costs, plan)
    assert header == (
        "| workload | app CPU µs/call (median) | per round | calls timed | prodserve / app |"
    )
    assert rule.count("|") == header.count("|")
    # Median of the three good rounds, every round in order, calls as a range, median ratio.
    assert row == "| django | 150.0 | 100.0, 200.0, failed, 150.0 | 1,000–4,000 | 1.10 |"
    # One round: the plain table, as before.
    header, _, row = run.fmt_app_costs(results[:1], app_costs("django", 100.0), plan)
    assert "per round" not in header and "(median)" not in header
    assert row == "| django | 100.0 | 1,000 | 1.10 |"
    assert run.fmt_app_costs(results, app_costs("django", None, None), plan) == []


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


def test_goals_table_shows_bjoern_next_to_prodserve():
    results = []
    for round_no, (ours, granian, bjoern, app) in enumerate(
        ((30.0, 25.0, 15.0, 100.0), (28.0, 20.0, 12.0, 120.0), (40.0, 30.0, 20.0, 110.0)),
        start=1,
    ):
        results += [
            result("prodserve", "bare", round_no, cpu_us_per_req=ours),
            result("granian", "bare", round_no, cpu_us_per_req=granian),
            result("bjoern", "bare", round_no, cpu_us_per_req=bjoern),
            result("prodserve", "django", round_no, rps=3000.0, cpu_us_per_req=app * 1.3),
            result("bjoern", "django", round_no, rps=4000.0, cpu_us_per_req=app * 1.1),
            result("gunicorn", "django", round_no, rps=1500.0, cpu_us_per_req=app * 2.5),
        ]
    costs = {
        n: {"django": run.AppCost(cpu_us_per_req=app, calls=10)}
        for n, app in ((1, 100.0), (2, 120.0), (3, 110.0))
    }
    lines = run.fmt_goals(results, costs)
    assert lines[0].endswith("| verdict | bjoern, same ratio |")
    assert lines[1] == "|---|---|---|---|"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert len(rows) == len(run.GOALS)
    # bare: prodserve/granian 1.20, 1.40, 1.33 -> 1.33 FAIL; bjoern/granian 0.60, 0.60, 0.67.
    keep_alive = rows["bare hello, keep-alive"]
    assert "bare CPU µs/req ÷ granian 1.33 (target ≤ 0.80) | FAIL | 0.60 (meets target) |" in (
        keep_alive
    )
    # prodserve 0.52 (CPU) and 2.00 (req/s) fails where bjoern gets 0.44 and 2.67; with
    # several checks, bjoern's values are labelled by metric.
    saturation = rows["Django hello at saturation"]
    assert saturation.endswith(
        "| FAIL | CPU µs/req 0.44 (meets target); req/s 2.67 (meets target) |"
    )
    app_goal = rows["Django hello vs the app's own in-process cost"]
    assert app_goal.endswith("| FAIL | 1.10 (meets target) |")
    assert rows["1000 slow clients"].endswith("| not measured | not measured |")
    # The verdicts are prodserve's: the same rows without bjoern give the same verdicts.
    without = run.fmt_goals([r for r in results if r.server != "bjoern"], costs)
    assert "bjoern" not in without[0]
    assert [line.split(" | ")[-1] for line in without[2:]] == [
        line.split(" | ")[-2] + " |" for line in lines[2:]
    ]


def test_bjoern_is_an_opt_in_reference_server(monkeypatch):
    server = run.SERVERS["bjoern"]
    plan, _ = run.parse_args([])
    assert "bjoern" not in plan.servers
    argv = server.argv(8123, run.WORKLOADS["bare"])
    assert argv[1:] == [
        "bench/bjoern_serve.py",
        "--chdir",
        "testproject",
        "8123",
        str(run.WORKERS),
        "testproject.bare:application",
    ]
    assert (server.cwd / argv[1]).is_file()
    plan = run.Plan(["bjoern", "granian"], ["bare"], duration=1, warmup=0, connections=1)
    commands = "\n".join(run.commands_used(plan))
    assert "python bench/bjoern_serve.py --chdir testproject PORT 2 APP" in commands
    assert "--port PORT" in commands
    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None)
    reason = run.missing_reason(server)
    assert "'bjoern' not installed" in reason
    assert "apt-get install libev-dev && pip install bjoern" in reason


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


def test_commands_show_the_port_as_port_and_no_other_argument():
    plan = run.Plan(["prodserve-inline"], ["bare"], duration=1, warmup=0, connections=1)
    commands = "\n".join(run.commands_used(plan))
    assert "prodserve 127.0.0.1:PORT --workers 2" in commands
    assert "--spare-threads 0" in commands  # once shown as "--spare-threads PORT"
