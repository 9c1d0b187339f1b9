"""Files a config names, and the config file itself: only regular files are read, reads are
bounded, no message quotes another file's bytes, and --confine keeps every path inside a folder."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gradverify import config
from gradverify.api import check
from gradverify.errors import ConfigError, GradverifyError

TAIL = "layers: [{weights: [[1.0], [2.0]], bias: [0.0]}]\nlabels: [0]\n"


def cli(*args, timeout=30):
    """gradverify in a subprocess with a timeout, so that a hang fails the test instead of it."""
    res = subprocess.run([sys.executable, "-m", "gradverify", *args], capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stderr.strip()


def test_a_fifo_as_the_config_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "c.yaml"
    os.mkfifo(fifo)
    assert cli("check", str(fifo)) == (2, f"gradverify: error: {fifo}: is a FIFO (named pipe), expected a "
                                          "YAML config file")


def test_a_fifo_named_yaml_in_a_folder_of_configs_is_passed_over_not_waited_on(tmp_path):
    """`gradverify check FOLDER` reads every *.yaml to see whether it is a config: a FIFO among
    them hung the command forever."""
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "net.yaml").write_text(TAIL + "inputs: [[1.0, 2.0]]\n")
    status, err = cli("check", str(tmp_path), "-q")
    assert status == 0, err


@pytest.mark.parametrize("command", [["check"], ["graph"], ["node", "x", "--config"]])
def test_a_config_that_is_a_symlink_loop_is_one_located_line(tmp_path, command):
    """`check` said "internal error: RuntimeError" (Path.resolve on the loop); node and graph
    already said why."""
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    assert cli(*command, str(loop)) == (2, f"gradverify: error: {loop}: cannot read: Too many levels of "
                                           "symbolic links")


def test_a_device_as_the_config_is_refused_not_read_without_end():
    assert cli("check", "/dev/zero") == (2, "gradverify: error: /dev/zero: is a character device, "
                                            "expected a YAML config file")


def test_a_fifo_or_device_as_an_array_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "x.npy")
    (tmp_path / "c.yaml").write_text("inputs: {file: x.npy}\n" + TAIL)
    code, message = cli("check", str(tmp_path / "c.yaml"))
    assert (code, message) == (2, f"gradverify: error: {tmp_path / 'c.yaml'}:1:10: inputs.file: x.npy is "
                                  "a FIFO (named pipe), not a .npy file")
    with pytest.raises(ConfigError, match="/dev/zero is a character device, not a .npy file"):
        config.parse("inputs: {file: /dev/zero}\n" + TAIL)


def test_the_config_read_is_bounded(tmp_path, monkeypatch):
    from gradverify.config import toplevel
    monkeypatch.setattr(toplevel, "MAX_FILE_BYTES", 10)
    (tmp_path / "c.yaml").write_text("seed: 1\n" * 3)
    with pytest.raises(ConfigError, match="more than the 10 bytes a config may be"):
        config.load(tmp_path / "c.yaml")


def test_no_message_quotes_another_files_bytes(tmp_path):
    secret = tmp_path / "secret.npy"
    secret.write_text("root:x:0:0:TOPSECRET:/root:/bin/bash\n")
    with pytest.raises(ConfigError) as e:
        config.parse(f"inputs: {{file: {secret}}}\n" + TAIL, file="c.yaml")
    assert str(e.value) == f"c.yaml:1:10: inputs.file: {secret} is not a .npy file (or it is damaged)"
    assert "TOPSECRET" not in str(e.value) and "root" not in str(e.value).replace(str(tmp_path), "")


@pytest.fixture
def layout(tmp_path):
    """ci/c.yaml naming ci/x.npy (inside), ../outside.npy, an absolute path, and a symlink out."""
    ci = tmp_path / "ci"
    ci.mkdir()
    np.save(ci / "x.npy", np.ones((1, 2)))
    np.save(tmp_path / "outside.npy", np.ones((1, 2)))
    (ci / "link.npy").symlink_to(tmp_path / "outside.npy")
    return ci


@pytest.mark.parametrize("name", ["../outside.npy", "ABS", "link.npy"])
def test_confine_refuses_paths_outside(layout, name):
    name = str(layout.parent / "outside.npy") if name == "ABS" else name
    text = f"inputs: {{file: {name}}}\n" + TAIL
    (layout / "c.yaml").write_text(text)
    config.load(layout / "c.yaml")  # allowed without --confine
    with pytest.raises(ConfigError) as e:
        config.load(layout / "c.yaml", confine=layout)
    assert str(e.value) == (f"{layout / 'c.yaml'}:1:10: inputs.file: {name} is outside {layout}, the only "
                            "folder this check may read (--confine)")
    code, message = cli("check", str(layout / "c.yaml"), "--confine", str(layout))
    assert code == 2 and message.endswith("the only folder this check may read (--confine)")
    with pytest.raises(GradverifyError, match="is outside"):
        check(str(layout / "c.yaml"), confine=layout)


def test_confine_allows_paths_inside(layout):
    (layout / "c.yaml").write_text("inputs: {file: ./sub/../x.npy}\n" + TAIL)
    (layout / "sub").mkdir()
    assert config.load(layout / "c.yaml", confine=layout).inputs.shape == (1, 2)
    assert check(str(layout / "c.yaml"), confine=layout).ok


def test_confine_must_be_a_folder(layout):
    assert cli("check", str(layout / "x.npy"), "--confine", str(layout / "nope")) == (
        2, f"gradverify: error: --confine {layout / 'nope'}: not a folder")
    with pytest.raises(GradverifyError, match="confine=.*: not a folder"):
        check(str(layout / "c.yaml"), confine=layout / "nope")


def test_confine_covers_code_refs(layout):
    (layout.parent / "ops.py").write_text("def relu_forward(x):\n    return x\n")
    (layout / "c.yaml").write_text("inputs: [[1.0, 2.0]]\nlabels: [0]\n"
                                   "layers: [{weights: [[1.0], [2.0]], bias: [0.0], activation: ../ops.py:relu}]\n")
    with pytest.raises(ConfigError) as e:
        config.load(layout / "c.yaml", confine=layout)
    assert str(e.value) == (f"{layout / 'c.yaml'}:3:49: layers[0].activation: ../ops.py is outside {layout}, "
                            "the only folder this check may read (--confine)")


MODEL = ("import numpy as np\n"
         "class Net:\n"
         "    def __init__(self):\n        self.params = {'W': np.ones((2, 1))}\n"
         "    def loss(self, X):\n        W = self.params['W']\n"
         "        return float((X @ W).sum()), {'W': X.sum(axis=0)[:, None]}\n")


@pytest.mark.parametrize("where", ["../net.py", "ABS", "link.py"])
def test_confine_refuses_a_model_class_outside(layout, where):
    """`model: {class: file.py:Class}` is a path the config names like any other: under --confine
    the model's file is refused before any of its code runs (the file would raise at import)."""
    (layout.parent / "net.py").write_text("raise SystemExit('ran outside')\n" + MODEL)
    (layout / "link.py").symlink_to(layout.parent / "net.py")
    where = str(layout.parent / "net.py") if where == "ABS" else where
    (layout / "c.yaml").write_text(f"data: {{X: [[1.0, 2.0]]}}\nmodel:\n  class: {where}:Net\n"
                                   "  inputs: [X]\n")
    with pytest.raises(ConfigError) as e:
        config.load(layout / "c.yaml", confine=layout)
    assert str(e.value) == (f"{layout / 'c.yaml'}:3:3: model.class: {where} is outside {layout}, the only "
                            "folder this check may read (--confine)")
    code, message = cli("check", str(layout / "c.yaml"), "--confine", str(layout))
    assert code == 2 and message.endswith("model.class: " + e.value.message) and "ran outside" not in message
    with pytest.raises(GradverifyError, match="is outside"):
        check(str(layout / "c.yaml"), confine=layout)
    with pytest.raises(GradverifyError, match="model.class"):
        check({"data": {"X": [[1.0, 2.0]]}, "model": {"class": f"{where}:Net", "inputs": ["X"]}},
              confine=layout)


def test_confine_allows_a_model_class_inside(layout):
    (layout / "net.py").write_text(MODEL)
    (layout / "c.yaml").write_text("data: {X: [[1.0, 2.0]]}\nmodel: {class: net.py:Net, inputs: [X]}\n")
    rep = check(str(layout / "c.yaml"), confine=layout)
    assert rep.ok and rep.node("W").status == "pass"


EMBED = ("data:\n  idx: {{file: {name}}}\nvalues:\n  W: {{shape: [5, 4], init: normal}}\ngraph:\n"
         "  - {{name: emb, op: emb.py:embed_forward, inputs: [idx, W]}}\nloss: emb\n")
EMBED_PY = ("import numpy as np\n"
            "def embed_forward(idx, W):\n    assert idx.dtype.kind == 'i'\n    return W[idx], (idx, W)\n"
            "def embed_backward(dout, cache):\n    idx, W = cache\n    dW = np.zeros_like(dout, shape=W.shape)\n"
            "    np.add.at(dW, idx, dout)\n    return dW\n")


@pytest.mark.parametrize("name", ["../outside_idx.npy", "fifo.npy", "secret.npy"])
def test_a_data_file_is_read_like_every_array_file(layout, name):
    """`data: {idx: {file: …}}` went around the array reader: outside --confine it was read, a
    FIFO hung the check, and np.load's own message was passed on. Now it is one more array file."""
    np.save(layout.parent / "outside_idx.npy", np.array([[0, 1]]))
    os.mkfifo(layout / "fifo.npy")
    (layout / "secret.npy").write_text("root:x:0:0:TOPSECRET\n")
    (layout / "emb.py").write_text(EMBED_PY)
    (layout / "c.yaml").write_text(EMBED.format(name=name))
    code, message = cli("check", str(layout / "c.yaml"), "--confine", str(layout))
    why = {"../outside_idx.npy": "../outside_idx.npy is outside", "fifo.npy": "fifo.npy is a FIFO (named pipe)",
           "secret.npy": "secret.npy is not a .npy file (or it is damaged)"}[name]
    assert code == 2 and message.startswith(f"gradverify: error: {layout / 'c.yaml'}:2:9: data.idx.file: {why}")
    assert "TOPSECRET" not in message


def test_a_data_file_inside_keeps_its_integers(layout):
    np.save(layout / "idx.npy", np.array([[0, 3], [3, 1]]))
    (layout / "emb.py").write_text(EMBED_PY)
    (layout / "c.yaml").write_text(EMBED.format(name="idx.npy"))
    rep = check(str(layout / "c.yaml"), confine=layout)
    assert rep.ok and [n.name for n in rep.nodes] == ["W", "emb", "loss"]
