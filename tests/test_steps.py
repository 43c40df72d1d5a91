import io

import pytest

from ovapipe.errors import BuildError, ConfigError, Interrupted, StepFailed
from ovapipe.steps import Run, Step, run_steps


def make_steps(events, fail_at=None, exc=None):
    def step(name):
        def action(state, run):
            events.append(f"run {name}")
            run.on_failure(f"undo {name}", lambda: events.append(f"undo {name}"))
            run.always(f"tidy {name}", lambda: events.append(f"tidy {name}"))
            if name == fail_at:
                raise exc
        return Step(name, action)
    return [step(n) for n in ("a", "b", "c")]


def quiet():
    return Run(log=io.StringIO())


def test_success_runs_only_always_cleanups_in_reverse():
    events = []
    run = run_steps(make_steps(events), None, run=quiet())
    assert events == ["run a", "run b", "run c", "tidy c", "tidy b", "tidy a"]
    assert [t.status for t in run.timings] == ["ok", "ok", "ok"]


def test_failure_unwinds_everything_registered_in_reverse_and_names_the_step():
    events = []
    with pytest.raises(StepFailed) as caught:
        run_steps(make_steps(events, "b", BuildError("packer exited 1")), None, run=quiet())
    assert events == ["run a", "run b", "tidy b", "undo b", "tidy a", "undo a"]
    assert caught.value.step == "b"
    assert "step 'b' failed: packer exited 1" in str(caught.value)
    assert caught.value.exit_code == 1


def test_config_error_keeps_its_exit_code():
    with pytest.raises(StepFailed) as caught:
        run_steps(make_steps([], "a", ConfigError("bad")), None, run=quiet())
    assert caught.value.exit_code == 2


def test_ctrl_c_unwinds_and_reports_interrupted():
    events = []
    with pytest.raises(Interrupted):
        run_steps(make_steps(events, "c", KeyboardInterrupt()), None, run=quiet())
    assert events[-2:] == ["tidy a", "undo a"]
    assert "undo c" in events


def test_keep_on_error_leaves_things_for_debugging():
    events = []
    with pytest.raises(StepFailed):
        run_steps(make_steps(events, "b", RuntimeError("x")), None, run=quiet(),
                  keep_on_error=True)
    assert not any(e.startswith(("undo", "tidy")) for e in events)


def test_a_failing_cleanup_does_not_stop_the_others():
    events = []
    run = quiet()

    def action(state, r):
        r.on_failure("first", lambda: events.append("first"))
        r.on_failure("broken", lambda: (_ for _ in ()).throw(RuntimeError("vCenter gone")))
        raise BuildError("boom")

    with pytest.raises(StepFailed):
        run_steps([Step("only", action)], None, run=run)
    assert events == ["first"]
    assert "cleanup 'broken' failed: vCenter gone" in run.log.getvalue()
