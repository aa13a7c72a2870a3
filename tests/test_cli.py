"""The commands' shared rules (minircnn.cli): --device defaults to $MINIRCNN_DEVICE and a missing GPU is an error;
misuse ends in one line naming the file or flag and a non-zero exit, never a traceback or a false claim."""
import subprocess
import sys

import pytest

from minircnn import detect, evaluate, train
from minircnn.backend import gpu_available
from minircnn.data import generate_shapes_dataset

needs_no_gpu = pytest.mark.skipif(gpu_available(), reason="checks the error on a machine without a GPU")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "shapes"
    return generate_shapes_dataset(root, seed=2, trainval=2, test=1, progress=False)


@pytest.fixture(scope="module")
def checkpoint(voc, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train.main(["--data", str(voc), "--out", str(out), "--iters", "1", "--weights", "none", "--scale", "64",
                "--no-eval", "--proposals", "dense", "--quiet"])
    return out / "checkpoint.npz"


def one_line_error(excinfo, *fragments):
    text = str(excinfo.value.code)
    assert text.startswith("error: ") and "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text


@needs_no_gpu
@pytest.mark.parametrize("command", [train.main, evaluate.main, detect.main])
def test_gpu_from_the_environment_without_a_gpu_is_an_error(command, checkpoint, monkeypatch, tmp_path):
    """MINIRCNN_DEVICE=gpu reaches every command's --device; without a GPU each stops before any work."""
    monkeypatch.setenv("MINIRCNN_DEVICE", "gpu")
    argv = {train.main: ["--out", str(tmp_path), "--quiet"],
            evaluate.main: ["--checkpoint", str(checkpoint)],
            detect.main: ["--checkpoint", str(checkpoint), "x.png"]}[command]
    with pytest.raises(SystemExit) as e:
        command(argv)
    one_line_error(e, "GPU")
    assert not (tmp_path / "config.json").exists()


def test_a_bad_device_variable_names_it(monkeypatch, checkpoint):
    monkeypatch.setenv("MINIRCNN_DEVICE", "tpu")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--checkpoint", str(checkpoint)])
    one_line_error(e, "$MINIRCNN_DEVICE", "'tpu'")


def test_detect_on_a_file_that_is_not_an_image(checkpoint, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list\n")
    with pytest.raises(SystemExit) as e:
        detect.main(["--checkpoint", str(checkpoint), str(notes), "--out", str(tmp_path / "d")])
    one_line_error(e, "notes.jpg", "cannot decode the image")


def test_evaluate_on_a_json_file_names_it(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"iters": 3}\n')
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--checkpoint", str(config)])
    one_line_error(e, "config.json", "not a NumPy .npz archive")
    assert "pickle" not in str(e.value.code)


def test_divergence_before_the_first_checkpoint_claims_no_checkpoint(voc, tmp_path):
    """A learning rate of 1e6 makes the loss nan within a few steps, before the first checkpoint (every 50): the
    message says nothing was saved, instead of pointing to a checkpoint that does not exist."""
    with pytest.raises(SystemExit) as e:
        train.main(["--data", str(voc), "--out", str(tmp_path), "--iters", "30", "--weights", "none", "--scale", "64",
                    "--no-eval", "--proposals", "dense", "--quiet", "--lr", "1e6", "--checkpoint-every", "50"])
    one_line_error(e, "loss became nan at iteration", "nothing was saved")
    assert "was kept" not in str(e.value.code) and not (tmp_path / "checkpoint.npz").exists()


def test_a_command_prints_one_line_and_exits_non_zero(tmp_path):
    """Run as a user would: one line on stderr, exit status 1, no traceback."""
    done = subprocess.run([sys.executable, "-m", "minircnn.evaluate", "--checkpoint", str(tmp_path / "none.npz")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: no checkpoint at {tmp_path / 'none.npz'}"]


def test_a_folder_given_as_an_image_is_named(checkpoint, tmp_path):
    with pytest.raises(SystemExit) as e:
        detect.main(["--checkpoint", str(checkpoint), str(tmp_path), "--out", str(tmp_path / "d")])
    one_line_error(e, str(tmp_path), "a folder, not an image file")


def test_ctrl_c_ends_a_command_quietly(monkeypatch, capsys):
    """An interrupted command prints one word and exits with status 130 (128 + SIGINT), without a traceback."""
    from minircnn import cli

    def interrupted(argv=None):
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as e:
        cli.run_command(interrupted)([])
    assert e.value.code == 130 and capsys.readouterr().err.strip() == "interrupted"
