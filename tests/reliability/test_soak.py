"""The soak's short form (issue 18): 8 clients for 45 s over every dialect, structured output and
20% dropped mid-stream: no errors, the engine idle and healthy after, memory flat. The long form:
python -m tensorsharp.testing.soak --minutes 30."""
from tensorsharp.testing.server import running_process, serve_args
from tensorsharp.testing.soak import soak


def test_short_soak(tmp_path):
    with running_process(serve_args("smollm2-135m", "--ctx", "1024", "--parallel", "4"), tmp_path,
                         env={"TENSORSHARP_THREADS": "2"}) as (base, proc):
        out = soak(base, proc.pid, seconds=45, clients=8, drop=0.2)
    assert out["n_errors"] == 0, out["errors"]
    assert out["counts"].get("ok", 0) >= 20 and out["counts"].get("dropped", 0) >= 2, out["counts"]
    assert out["idle_after"] and out["health_after"] == 200
    assert out["rss_growth_last_half"] < 0.10, out["rss_kb"]
