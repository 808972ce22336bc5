"""Every notebook runs top to bottom (small settings), writes nothing into the checkout, and says what is true.

MBTRAIN_NOTEBOOK_QUICK=1 tells a notebook to use small settings. A cell that
raises fails the test with the cell's source and the error. Each notebook runs
once, as a reader runs it: in ``notebooks/`` of the checkout, with no
``MBTRAIN_NOTEBOOK_OUT``, so its outputs go to its default folder (a fresh
temporary one, here under the test's own temporary directory); the folder must
gain no file. Notebook 1's lessons are then read from the kernel's variables
and checked here, independently of the asserts the notebook makes itself.
"""
import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Code run in a notebook's kernel after its last cell; it prints one JSON line of what the test checks.
PROBES = {
    "01_four_equations_checked": """
import json
print(json.dumps({
    "failing": {bug: sorted(failing(result)) for bug, (cost, result) in results.items()},
    "hints": {bug: result.hints for bug, (cost, result) in results.items()},
    "curves": curves, "etas": etas, "final": final,
}))
""",
}


def files_under(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


_runs = {}


def executed(path, tmp_path_factory):
    """``(notebook, probe, new_files)``: ``path`` run once per test session, its probe's JSON, what it left."""
    if path not in _runs:
        tmp = tmp_path_factory.mktemp(path.stem)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MBTRAIN_NOTEBOOK_QUICK", "1")
            patch.setenv("MPLBACKEND", "Agg")
            patch.delenv("MBTRAIN_NOTEBOOK_OUT", raising=False)
            patch.setenv("TMPDIR", str(tmp))  # the notebooks' default output folders are tempfile.mkdtemp()
            nb = nbformat.read(path, as_version=4)
            assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
                f"{path.name}: outputs are committed; clear them (keeps the diff small)"
            before = files_under(NOTEBOOK_DIR)
            client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                             resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
            probe = None
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    client.execute_cell(cell, index)
                if path.stem in PROBES:
                    cell = nbformat.v4.new_code_cell(PROBES[path.stem])
                    nb.cells.append(cell)
                    client.execute_cell(cell, len(nb.cells) - 1)
                    nb.cells.pop()
                    probe = json.loads(cell.outputs[-1]["text"])
            new_files = sorted(files_under(NOTEBOOK_DIR) - before)
        _runs[path] = nb, probe, new_files
    return _runs[path]


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path_factory):
    nb, _, _ = executed(path, tmp_path_factory)
    # every plot has a title and axis labels: checked where the notebook draws them
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert all(len(o["data"]["image/png"]) > 1000 for o in images)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_writes_nothing_into_the_notebooks_folder(path, tmp_path_factory):
    _, _, new_files = executed(path, tmp_path_factory)
    assert new_files == [], f"{path.name} wrote {new_files} into {NOTEBOOK_DIR}; write them under OUT instead"


EVERY_GROUP = sorted(f"{g}{l}" for l in (1, 2, 3) for g in "Wb")


@pytest.mark.slow
def test_notebook_1_lessons_hold(tmp_path_factory):
    """Each planted bug fails on the layer and group the text says; the 'faster' bug loses at the larger eta."""
    path = NOTEBOOK_DIR / "01_four_equations_checked.ipynb"
    _, probe, _ = executed(path, tmp_path_factory)
    failing, hints = probe["failing"], probe["hints"]
    assert failing == {
        "(none: correct backprop)": [],
        "hidden delta without σ'": ["W1", "W2", "b1", "b2"],  # the output layer (3) is right
        "σ' applied twice": ["W1", "W2", "b1", "b2"],
        "quadratic delta with cross-entropy cost": EVERY_GROUP,
        "cross-entropy delta with quadratic cost": EVERY_GROUP,
        "bias gradient dropped": ["b1"],
        "bias regularized": ["b1", "b2", "b3"],
        "not divided by m": EVERY_GROUP,
    }
    for bug in ("hidden delta without σ'", "σ' applied twice"):
        assert any("the error enters at layer 2" in hint for hint in hints[bug]), hints[bug]
    assert any("m = 6 times the numerical one" in hint for hint in hints["not divided by m"])
    # the bug looks faster at eta = 0.5 ...
    curves = probe["curves"]
    buggy, slow, tuned = curves["buggy (no σ'), η = 0.5"], curves["correct, η = 0.5"], curves["correct, η = 3.0"]
    assert buggy[-1] < slow[-1]
    # ... and loses to the correct backprop at the larger eta
    assert tuned[-1] < buggy[-1]
    etas, final = probe["etas"], probe["final"]
    largest = etas.index(max(etas))
    assert final["correct"][largest] < final["buggy (no σ')"][largest]
    assert min(final["correct"]) < min(final["buggy (no σ')"])  # the lowest loss of all is a correct backprop's

