"""The README's setup commands are the ones CI runs."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _commands_after(text, heading):
    block = text.split(heading, 1)[1]
    return re.search(r"```bash\n(.+?)\n```", block, re.S).group(1).strip()


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run ends with the README's test command, verbatim."""
    readme = (ROOT / "README.md").read_text()
    test_command = _commands_after(readme, "Run the tests:")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == test_command


def test_main_job_module_exists():
    """The README's main-job command names a module of the package."""
    readme = (ROOT / "README.md").read_text()
    module = re.search(r"python -m ([\w.]+)", _commands_after(readme, "Run the main job")).group(1)
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
