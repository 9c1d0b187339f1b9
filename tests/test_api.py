"""The Python API: gradverify.check, gradverify.check_op, Report; the README's example runs."""
import re
import subprocess
import sys

import numpy as np
import pytest

import gradverify
from gradverify.errors import ConfigError

from conftest import CONFIGS, ROOT


def test_public_surface():
    assert set(gradverify.__all__) == {"check", "check_op", "check_loss", "check_model", "Report", "GradverifyError",
                                       "__version__"}


def test_check_takes_path_text_and_dict():
    text = (CONFIGS / "seed.yaml").read_text()
    import yaml
    for cfg in (CONFIGS / "seed.yaml", str(CONFIGS / "seed.yaml"), text, yaml.safe_load(text)):
        rep = gradverify.check(cfg)
        assert rep.ok and rep.status == "kink" and rep.loss == pytest.approx(1.6433835063990552)
    assert rep.to_dict()["summary"]["kink"] == 5


def test_check_bad_config_raises_with_location():
    with pytest.raises(ConfigError, match=r"<string>:1:1: inptus: unknown key"):
        gradverify.check("inptus: 1\nlayers: []\n")


def test_check_op_matches_hand_gradient():
    """Σ out·R for out = x @ w: d/dx = R wᵀ, d/dw = xᵀ R, by hand."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 2)), rng.normal(size=(2, 4))
    fwd = lambda x, w: (x @ w, (x, w))  # noqa: E731
    bwd = lambda d, c: (d @ c[1].T, c[0].T @ d)  # noqa: E731
    rep = gradverify.check_op(fwd, bwd, x, w, seed=5)
    assert rep.ok and [n.name for n in rep.nodes] == ["x", "w", "out", "loss"]
    from gradverify.userops import Project

    R = np.random.default_rng([5, Project.STREAM]).normal(size=(3, 4))  # R's own stream under seed 5
    np.testing.assert_allclose(rep.nodes[0].analytic, (R @ w.T).reshape(-1), rtol=1e-13)
    np.testing.assert_allclose(rep.nodes[1].numeric, (x.T @ R).reshape(-1), rtol=1e-12)


def test_assert_ok_message_is_the_table():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    bad = lambda d, c: d * 0.5 * (1 - c ** 2)  # noqa: E731  tanh' wrong by a factor 2
    rep = gradverify.check_op(lambda x: (np.tanh(x), np.tanh(x)), bad, x)
    with pytest.raises(AssertionError) as e:
        rep.assert_ok()
    assert "gradverify check" in str(e.value) and "FAIL" in str(e.value) and "blame" in str(e.value)


def test_example_test_file_passes():
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "examples" / "test_layers_example.py")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 passed" in res.stdout


# ---- arguments are validated as the command line validates them -----------------------------

@pytest.mark.parametrize("kwargs,said", [
    (dict(method="centrl"), "method='centrl': expected one of auto, complex, central, richardson, forward, "
                            "taylor (did you mean 'central'?)"),
    (dict(rtol=-1), "rtol=-1: expected a finite number ≥ 0"),
    (dict(atol=float("nan")), "atol=nan: expected a finite number ≥ 0"),
    (dict(sample=0), "sample=0: expected an integer ≥ 1"),
    (dict(sample=True), "sample=True: expected an integer ≥ 1"),
    (dict(seed=-1), "seed=-1: expected an integer ≥ 0"),
    (dict(strict="no"), "strict='no': expected True or False"),
    (dict(nodes=[1]), "nodes=[1]: expected node name patterns"),
])
def test_check_validates_its_arguments(kwargs, said):
    with pytest.raises(gradverify.GradverifyError) as e:
        gradverify.check(CONFIGS / "seed.yaml", **kwargs)
    assert str(e.value).startswith(said), str(e.value)


def test_nodes_as_one_string_is_one_pattern():
    """nodes="w1" used to be split into the patterns "w" and "1"."""
    rep = gradverify.check(CONFIGS / "seed.yaml", nodes="w1")
    assert [n.name for n in rep.nodes] == ["w1"]


@pytest.mark.parametrize("args,said", [
    ((lambda x: (x, x), None, [1.0]), "check_op: backward must be a function, got NoneType"),
    (("forward", lambda d, c: d, [1.0]), "check_op: forward must be a function, got str"),
    ((lambda x: (x, x), lambda d, c: d, ["a"]), "check_op: input 0 is not an array of real numbers"),
    ((lambda x: (x, x), lambda d, c: d, [np.nan]), "check_op: input 0 contains NaN or Inf"),
])
def test_check_op_validates_its_arguments(args, said):
    with pytest.raises(gradverify.GradverifyError, match=re.escape(said)):
        gradverify.check_op(*args)


def test_check_op_validates_method_and_tolerances():
    fwd, bwd = (lambda x: (np.tanh(x), x)), (lambda d, c: d * (1 - np.tanh(c) ** 2))
    with pytest.raises(gradverify.GradverifyError, match="did you mean 'central'"):
        gradverify.check_op(fwd, bwd, np.ones(2), method="centrl")
    with pytest.raises(gradverify.GradverifyError, match="rtol=-1"):
        gradverify.check_op(fwd, bwd, np.ones(2), rtol=-1)


def test_keyboard_interrupt_raised_by_an_op_is_its_error():
    def fwd(x):
        raise KeyboardInterrupt

    with pytest.raises(gradverify.GradverifyError, match=r"fwd raised KeyboardInterrupt itself \(not a Ctrl-C\)"):
        gradverify.check_op(fwd, lambda d, c: d, np.ones(2))


def test_check_op_stateful_forward_fails():
    calls = []

    def counted_forward(x):
        calls.append(1)
        return x * len(calls), x

    rep = gradverify.check_op(counted_forward, lambda d, c: d, np.ones(3))
    assert not rep.ok and "counted_forward is not deterministic" in rep.node("counted_forward").problem


def test_check_op_of_a_forward_calling_os_exit_raises_instead_of_ending_the_process():
    """os._exit(0) in the forward given to check_op ended the caller's process, status 0 (a test
    suite: green, its later tests never run). In a subprocess, for that reason."""
    import subprocess
    import sys

    code = ("import os, numpy as np, gradverify\n"
            "def f(x):\n    os._exit(0)\n"
            "def b(d, c):\n    return d\n"
            "try:\n    gradverify.check_op(f, b, np.ones((2, 3)))\n"
            "except gradverify.GradverifyError as e:\n    print('raised:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "raised: f (f/b): f called os._exit(0)", done


def test_checks_on_several_threads_leave_os_exit_as_it_was():
    """os._exit is guarded while a check runs; two threads' checks interleave, and the guard was
    put back in the wrong order: os._exit stayed gradverify's for good (a later os._exit(0) raised
    instead of ending the program)."""
    import os
    import threading

    real = os._exit

    def job():
        for _ in range(3):
            gradverify.check(CONFIGS / "seed.yaml")
    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert os._exit is real


def test_another_threads_os_exit_still_ends_the_process():
    """A watchdog thread (pytest-timeout's "thread" method) ending a hung test with os._exit(1)
    while a check runs: the guard raised in the watchdog, the check went on, the process exited
    0. Only the context running the check is guarded."""
    import subprocess
    import sys

    code = ("import os, threading, time, numpy as np, gradverify\n"
            "def f(x):\n    time.sleep(0.3)\n    return 2 * x, x\n"
            "def b(d, c):\n    return 2 * d\n"
            "threading.Timer(0.5, lambda: os._exit(7)).start()\n"
            "gradverify.check_op(f, b, np.ones(3))\n"
            "print('still running')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 7 and "still running" not in done.stdout, done
