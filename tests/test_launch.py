"""The set-up scripts as a fresh machine runs them (launch/setup.sh, sourced by run.sh and
test.sh), with stand-in interpreters: what the install prints, a failed install, a Python too
old or unable to make a virtualenv."""

import os
import subprocess

from conftest import ROOT

BANNER = "BuildBackendWarning: Editable installation."


def _venv(tmp_path, status):
  """A virtualenv whose python logs its arguments to tmp_path/pip.log, prints the
  editable-install banner and exits with `status`."""
  python = tmp_path / "venv" / "bin" / "python"
  python.parent.mkdir(parents=True)
  python.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/pip.log\necho '{BANNER}' >&2\n"
                    f"exit {status}\n")
  python.chmod(0o755)
  return tmp_path / "venv"


def _setup(venv, **env):
  return subprocess.run(["bash", "-c", f"source {ROOT}/launch/setup.sh test && echo sourced"],
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "ALEXNET_VENV": str(venv), **env})


def _base_python(tmp_path, version="3.12.0", venv_status=0):
  """A stand-in for the Python that makes the virtualenv: `version`; ensurepip importable once
  tmp_path/venv-package exists; `-m venv DIR` makes DIR/bin/python (a stand-in that installs
  nothing and succeeds) and exits with `venv_status`."""
  major, minor = (int(p) for p in version.split(".")[:2])
  python = tmp_path / "base-python"
  python.write_text(f"""#!/bin/sh
case "$1" in
  --version) echo "Python {version}" ;;
  -c) case "$2" in
        *ensurepip*) [ -e "{tmp_path}/venv-package" ] ;;
        *version_info\\ \\<*) [ {int((major, minor) < (3, 11))} = 0 ] ;;
        *) echo "{major}.{minor}" ;;
      esac ;;
  -m) mkdir -p "$3/bin" && printf '#!/bin/sh\\nexit 0\\n' > "$3/bin/python" &&
      chmod +x "$3/bin/python" && exit {venv_status} ;;
esac
""")
  python.chmod(0o755)
  return str(python)


def _apt_get(tmp_path):
  """A stand-in apt-get on the PATH: logs its arguments; `install` provides the venv package."""
  folder = tmp_path / "bin"
  folder.mkdir()
  (folder / "apt-get").write_text(f"""#!/bin/sh
echo "$@" >> "{tmp_path}/apt.log"
[ "$1" = install ] || [ "$4" = install ] && touch "{tmp_path}/venv-package"
exit 0
""")
  (folder / "apt-get").chmod(0o755)
  return f"{folder}:{os.environ['PATH']}"


def test_a_good_install_prints_nothing_of_pip_or_the_build_backend(tmp_path):
  """Mutation: the install's output not sent to the log -> red (the banner on every run.sh)."""
  proc = _setup(_venv(tmp_path, 0))
  assert proc.returncode == 0 and proc.stdout.strip().endswith("sourced"), proc.stderr
  assert BANNER not in proc.stdout + proc.stderr


def test_run_sh_installs_the_package_alone_and_passes_its_arguments_to_the_run(tmp_path):
  """`bash launch/run.sh --config.num_epochs=1` read its first argument as the extras to
  install (`source` passes the script's own arguments on): pip failed on
  `alexnet_jax[--config.num_epochs=1]`. Mutation: setup.sh sourced without its empty argument
  -> red."""
  venv = _venv(tmp_path, 0)
  proc = subprocess.run(["bash", os.path.join(ROOT, "launch", "run.sh"),
                         "--config.num_epochs=1", f"--workdir={tmp_path}/w"],
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, "ALEXNET_VENV": str(venv)})
  assert proc.returncode == 0, proc.stderr
  calls = (tmp_path / "pip.log").read_text().splitlines()
  assert calls[1] == f"-m pip install -q -e {ROOT}"
  assert calls[-1] == ("-m alexnet_jax.main --config=configs/fashion_mnist.py --workdir="
                       f"{ROOT}/workdir/fashion_mnist --config.num_epochs=1 --workdir={tmp_path}/w")


def test_a_failed_install_shows_its_log_and_one_error_line(tmp_path):
  proc = _setup(_venv(tmp_path, 1))
  assert proc.returncode == 1 and "sourced" not in proc.stdout
  assert BANNER in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith(
      "error: installing alexnet_jax into")


def test_a_python_older_than_3_11_is_one_line_and_makes_no_virtualenv(tmp_path):
  proc = _setup(tmp_path / "venv", PYTHON=_base_python(tmp_path, "3.9.2"), PATH=_apt_get(tmp_path))
  assert proc.returncode == 1 and "sourced" not in proc.stdout
  assert proc.stderr.strip().splitlines() == [
      f"error: alexnet_jax needs Python 3.11 or later; {tmp_path}/base-python is Python 3.9.2: "
      "set PYTHON=/path/to/python3.11 or later"]
  assert not (tmp_path / "venv").exists() and not (tmp_path / "apt.log").exists()


def test_a_python_without_venv_gets_debians_package_from_root_or_one_line(tmp_path):
  """Debian's python3 without python3-venv: `python3 -m venv` failed halfway and left a
  virtualenv without pip, so every later install failed on it."""
  proc = _setup(tmp_path / "venv", PYTHON=_base_python(tmp_path), PATH=_apt_get(tmp_path))
  if os.geteuid() == 0:
    assert proc.returncode == 0 and proc.stdout.strip().endswith("sourced"), proc.stderr
    assert "install -y -qq python3-venv python3.12-venv" in (tmp_path / "apt.log").read_text()
    assert (tmp_path / "venv" / "bin" / "python").exists()
  else:
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/base-python cannot make a virtualenv (no ensurepip): apt-get "
        "install python3-venv python3.12-venv")
    assert not (tmp_path / "venv").exists()


def test_a_failed_venv_leaves_no_half_made_virtualenv(tmp_path):
  (tmp_path / "venv-package").touch()
  proc = _setup(tmp_path / "venv", PYTHON=_base_python(tmp_path, venv_status=1))
  assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
      f"error: {tmp_path}/base-python -m venv {tmp_path}/venv failed (above)")
  assert not (tmp_path / "venv").exists()
  (tmp_path / "mine").mkdir()  # a folder that was there before is the user's: kept
  _setup(tmp_path / "mine", PYTHON=_base_python(tmp_path, venv_status=1))
  assert (tmp_path / "mine").is_dir()


def test_lowest_installs_every_dependency_at_its_floor(tmp_path):
  """`bash launch/test.sh --lowest` (ALEXNET_LOWEST=1): pip gets each dependency's `>=` floor
  of pyproject.toml as an `==` constraint. Mutations: the constraint not passed to pip -> red;
  a floor written with its `>=` -> red."""
  import tomllib

  from packaging.requirements import Requirement

  proc = _setup(_venv(tmp_path, 0), ALEXNET_LOWEST="1")
  assert proc.returncode == 0, proc.stderr
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    floors = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]]
  expected = [f"{r.name}=={s.version}" for r in floors for s in r.specifier if s.operator == ">="]
  assert len(expected) == len(floors)
  assert (tmp_path / "venv" / "lowest.txt").read_text().split() == expected
  assert f"--constraint {tmp_path}/venv/lowest.txt" in (tmp_path / "pip.log").read_text()
