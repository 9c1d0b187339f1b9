"""gradverify: checks hand-written backpropagation, node by node, and says which op is wrong.

The Python API (see README, "Python API"):

    gradverify.check(config) -> Report        a network from a path, YAML text or a dict
    gradverify.check_op(forward, backward, *inputs, attrs=None, outputs=1) -> Report
                                              one cs231n-style op on given inputs
    gradverify.check_loss(fn, *inputs, attrs=None, data=()) -> Report
                                              a loss fn(*inputs, **attrs) -> (loss, grads)
    gradverify.check_model(model, *inputs, **kwargs) -> Report
                                              model.loss(*inputs) -> (loss, grads) over model.params
    Report: .ok, .status, .nodes, .blame, .to_dict(), .table(), .assert_ok()
"""

__version__ = "0.5.2"  # as in pyproject.toml (tests/test_docs.py checks they agree)
__all__ = ["check", "check_op", "check_loss", "check_model", "Report", "GradverifyError", "__version__"]


def __getattr__(name):  # the API loads numpy only when used: `gradverify --version` stays fast
    if name in ("check", "check_op", "check_loss", "check_model", "Report", "GradverifyError"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'gradverify' has no attribute {name!r}")
