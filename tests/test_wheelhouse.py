"""launch/wheelhouse.sh as a user runs it, offline: a copy of the script beside a made-up
pyproject.toml, pip reading made-up wheels from a folder, and `--have` with a node's
`pip list --format=freeze` (launch/wheelhouse_node.py)."""

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT

PYPROJECT = """[project]
name = "made-up"
version = "0"
dependencies = ["mu", "beta[x]>=2", "zeta>=1", "epsilon", "theta>=2.3"]

[project.optional-dependencies]
cuda12 = ["kappa[cuda12]>=1"]
cuda13 = ["kappa[cuda13]>=1"]
nvimgcodec = ["iota[nvjpeg]>=0.9"]
nvimgcodec-cu13 = ["iota[nvjpeg]>=0.9"]
test = ["pytest>=8", "pytest-xdist>=3.6", "ruff>=0.6", "nvidia-nvimgcodec-cu12>=0.9"]
benchmark = ["torch>=2.3", "lam>=0.22"]
"""

# name, version, its requirements (extras and markers as wheels write them)
WHEELS = [
    ("mu", "1.0", ["alpha>=1"]), ("mu", "2.0", ["alpha>=2"]),
    ("alpha", "1.5", ["alpha-dep"]), ("alpha", "2.0", ["alpha-dep"]), ("alpha-dep", "1.0", []),
    ("beta", "2.1", ['gamma; extra == "x"', "zeta>=2", 'eta; python_version < "3.10"']),
    ("gamma", "1.0", []), ("eta", "1.0", []), ("zeta", "1.9", []), ("zeta", "2.5", []),
    ("epsilon", "1.0", []), ("theta", "2.11.0", []), ("theta", "3.0", []),
    ("kappa", "1.2", ['kappa-plugin==1.2; extra == "cuda13"']), ("kappa-plugin", "1.2", []),
    ("iota", "0.9", ['nu; extra == "nvjpeg"']), ("nu", "1.0", []),
    ("pytest", "8.0", []), ("pytest-xdist", "3.6", []), ("lam", "0.22", []),
    ("ruff", "0.6", []), ("torch", "2.3", []), ("promise", "2.3", []),
]
NODE = ["alpha==1.5", "beta==1.0", "epsilon", "theta==2.11.0+cu130", "kappa==1.2",
        "kappa-plugin==1.2", "pytest", "-e git+https://example.org/x#egg=x"]


def _wheel(folder, name, version, requires):
  extras = sorted({r.split("extra == ")[1].strip('"') for r in requires if "extra ==" in r})
  meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                  *(f"Provides-Extra: {e}\n" for e in extras),
                  *(f"Requires-Dist: {r}\n" for r in requires)])
  dist = f"{name.replace('-', '_')}-{version}"
  with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as z:
    z.writestr(f"{dist}.dist-info/METADATA", meta)
    z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
               "Root-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{dist}.dist-info/RECORD", "")


def _wheelhouse(tmp_path, *args, node=None):
  """Runs a copy of launch/wheelhouse.sh (its pyproject.toml the made-up one) into
  tmp_path/out with pip offline on the made-up wheels; (result, the wheels kept)."""
  project = tmp_path / "project"
  if not project.exists():
    (project / "launch").mkdir(parents=True)
    for name in ("wheelhouse.sh", "wheelhouse_node.py"):
      shutil.copy(os.path.join(ROOT, "launch", name), project / "launch")
    (project / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "index").mkdir()
    for wheel in WHEELS:
      _wheel(tmp_path / "index", *wheel)
  out = tmp_path / "out"
  shutil.rmtree(out, ignore_errors=True)
  out.mkdir()
  shutil.copy(next((tmp_path / "index").glob("promise-*")), out)  # else built from PyPI
  if node is not None:
    (tmp_path / "node.txt").write_text("\n".join(node) + "\n")
    args += ("--have", str(tmp_path / "node.txt"))
  env = dict(os.environ, PYTHON=sys.executable, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
             PIP_FIND_LINKS=str(tmp_path / "index"), PIP_DISABLE_PIP_VERSION_CHECK="1")
  result = subprocess.run(["bash", str(project / "launch" / "wheelhouse.sh"), str(out), *args],
                          capture_output=True, text=True, env=env, timeout=300)
  kept = sorted(f.name.split("-py3")[0] for f in out.glob("*.whl"))
  return result, kept


def test_without_have_every_wheel_is_fetched_and_the_lint_is_not(tmp_path):
  result, kept = _wheelhouse(tmp_path, "--no-torch")
  assert result.returncode == 0, result.stderr
  assert (tmp_path / "out" / "requirements.txt").read_text().split() == [
      "mu", "beta[x]>=2", "zeta>=1", "epsilon", "theta>=2.3", "iota[nvjpeg]>=0.9", "pytest>=8",
      "pytest-xdist>=3.6", "lam>=0.22"]
  assert kept == ["alpha-2.0", "alpha_dep-1.0", "beta-2.1", "epsilon-1.0", "gamma-1.0",
                  "iota-0.9", "kappa-1.2", "kappa_plugin-1.2", "lam-0.22", "mu-2.0", "nu-1.0",
                  "promise-2.3", "pytest-8.0", "pytest_xdist-3.6", "theta-3.0", "zeta-2.5"]
  assert result.stdout.strip().startswith("16 wheels, ") and "left out" not in result.stdout


def test_have_resolves_against_the_nodes_versions_and_leaves_out_what_it_has(tmp_path):
  """The node's alpha 1.5 keeps mu at 1.0 (mu 2.0 would need alpha 2); what the node has at an
  acceptable version is left out (a bare name: any version; a local label as pip lists it),
  and so is what only those need (alpha-dep, kappa-plugin via kappa's extra); beta 1.0 is
  below the requirement: beta is kept, with its extra's gamma. Mutations: the constraints not
  passed to pip (mu 2.0, alpha kept); the walk through the node's own packages (alpha-dep
  kept); a package the node has kept regardless of version (beta left out) -> red."""
  result, kept = _wheelhouse(tmp_path, "--no-torch", node=NODE + ["zeta==2.5"])
  assert result.returncode == 0, result.stderr
  assert kept == ["beta-2.1", "gamma-1.0", "iota-0.9", "lam-0.22", "mu-1.0", "nu-1.0",
                  "pytest_xdist-3.6"]
  assert result.stdout.strip().endswith(
      "left out, the node has them: alpha, epsilon, kappa, kappa-plugin, pytest, theta, zeta")
  assert (tmp_path / "out" / "pinned.txt").read_text().split() == [
      "beta==2.1", "gamma==1.0", "iota==0.9", "lam==0.22", "mu==1.0", "nu==1.0",
      "pytest_xdist==3.6"]
  assert result.stderr == ""


def test_node_versions_that_leave_no_solution_are_said_and_the_set_resolved_without_them(
    tmp_path):
  """The node's zeta 1.9 meets the project's `zeta>=1` but not beta's `zeta>=2`: pip finds no
  solution with it, so the set is resolved without the node's versions, and every wheel that
  the node's versions do not fit is kept (alpha 2 for mu 2, zeta 2.5 for beta)."""
  result, kept = _wheelhouse(tmp_path, "--no-torch", node=NODE + ["zeta==1.9"])
  assert result.returncode == 0, result.stderr
  assert result.stderr.startswith("wheelhouse.sh: the node's versions leave no solution (")
  assert result.stderr.strip().endswith(": resolved without them")
  assert result.stderr.count("\n") == 1
  assert kept == ["alpha-2.0", "alpha_dep-1.0", "beta-2.1", "gamma-1.0", "iota-0.9",
                  "lam-0.22", "mu-2.0", "nu-1.0", "pytest_xdist-3.6", "zeta-2.5"]
  assert result.stdout.strip().endswith(
      "left out, the node has them: epsilon, kappa, kappa-plugin, pytest, theta")


def test_a_missing_have_file_or_an_unknown_option_is_one_line(tmp_path):
  result, _ = _wheelhouse(tmp_path, "--have", str(tmp_path / "nowhere.txt"))
  assert result.returncode == 2 and result.stderr.count("\n") == 1
  assert "pip list --format=freeze" in result.stderr
  result, _ = _wheelhouse(tmp_path, "--nope")
  assert result.returncode == 2 and result.stderr == "wheelhouse.sh: unknown option --nope\n"
