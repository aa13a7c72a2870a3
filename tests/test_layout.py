"""The shape of the repository: a package top a reader can take in, citations that point into the repository, one
home for thread control and for test time, library code that raises instead of exiting."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minircnn"
COMMANDS = {"train.py", "evaluate.py", "detect.py", "pretrain.py", "weights.py", "cli.py"}
OUTSIDE = re.compile(r"\b[Ss]pec §|shared/" r"spec|fast_rcnn_" r"reference|\.\./" r"shared")   # split: no hit here
TEXT = [p for pattern in ("minircnn/**/*.py", "minircnn/**/*.cu", "tests/**/*.py", "lessons/*.py", "lessons/*.md",
                          "benchmarks/*.py", "benchmarks/*.md", "docs/*.md", "README.md")
        for p in ROOT.glob(pattern)]


def test_the_package_top_holds_at_most_twelve_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
    assert "demo.py" not in top


def test_citations_point_into_the_repository():
    """Every "docs/reference.md §N" names a section the document has; nothing cites a file users do not have."""
    reference = (ROOT / "docs" / "reference.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", reference, re.M))
    for path in TEXT:
        text = path.read_text(encoding="utf-8")
        assert not OUTSIDE.search(text), path
        for cited in re.findall(r"docs/reference\.md §(\d+(?:\.\d+)?)", text):
            assert cited in sections, f"{path.relative_to(ROOT)} cites §{cited}, which docs/reference.md lacks"


def _defined_functions(path):
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}


def test_test_time_lives_outside_the_commands():
    for name in COMMANDS:
        assert not _defined_functions(PACKAGE / name) & {"im_detect", "detect_image", "detect_images",
                                                         "detect_split", "score_detections", "train"}, name
    assert "im_detect" in _defined_functions(PACKAGE / "inference" / "im_detect.py")


def test_one_module_controls_threads():
    """Only minircnn/threads.py talks to threadpoolctl or sets OpenBLAS threads; nobody searches for the library."""
    for path in list(PACKAGE.rglob("*.py")) + list((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text()
        if path != PACKAGE / "threads.py":
            assert "threadpool_limits" not in text and "openblas_set_num_threads" not in text, path
            assert "numpy.libs" not in text and "glob(" not in text or "openblas" not in text.lower(), path


def test_library_code_raises_instead_of_exiting():
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in COMMANDS:
            continue
        assert "SystemExit" not in path.read_text(), path.relative_to(ROOT)


def test_paths_named_in_the_text_exist():
    """A file the code, tests, lessons or documents point a reader to (``minircnn/...py``, ``tests/...py``, ...) is
    there: moving a module means updating what names it."""
    pattern = re.compile(r"(?<![\w/.])((?:minircnn|tests|benchmarks|lessons|docs)/[\w/]+\.(?:py|md|ipynb|cu))")
    for path in TEXT:
        for named in pattern.findall(path.read_text(encoding="utf-8")):
            if "NN_topic" not in named:
                assert (ROOT / named).exists(), f"{path.relative_to(ROOT)} names {named}, which does not exist"


def test_test_files_have_unique_names():
    """pytest imports test files by their base name (the test folders are not packages), so two test_x.py files in
    different folders would stop the whole run."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
