"""The node's side of launch/wheelhouse.sh --have FILE (FILE: the node's packages, as
`python3 -m pip list --format=freeze` prints them there; a bare name: any version).

  python3 launch/wheelhouse_node.py constraints DIR FILE  # DIR/node.txt, before the download
  python3 launch/wheelhouse_node.py prune DIR FILE PYVER  # after it; prints the names left out

`constraints`: the node's versions that meet the project's own requirements on them
(DIR/requirements.txt, DIR/cuda.txt), as pip constraints, so that the rest is resolved against
what the node has (a node's version below a requirement is left to be replaced). `prune`: the
wheel of each package the node has at a version that every requirement on it accepts is
removed, and so is every wheel that only such packages need.
"""

import email
import os
import re
import sys
import zipfile

try:
  from packaging.requirements import Requirement
  from packaging.version import InvalidVersion, Version
except ImportError:  # pip's own copy: the Python that runs pip has it
  from pip._vendor.packaging.requirements import Requirement
  from pip._vendor.packaging.version import InvalidVersion, Version


def norm(name: str) -> str:
  """A project name as pip compares them."""
  return re.sub(r"[-_.]+", "-", name).lower()


def node_packages(path: str) -> dict:
  """{name: the node's version, or None for any}."""
  have = {}
  for line in open(path):
    line = line.split("#")[0].strip()
    if line and not line.startswith("-"):
      name, pinned, version = line.partition("==")
      have[norm(name.split(" @ ")[0].strip())] = version.strip() if pinned else None
  return have


def roots(folder: str) -> list:
  """The requirements the wheelhouse was made for."""
  return [Requirement(line) for name in ("requirements.txt", "cuda.txt")
          for line in open(os.path.join(folder, name)).read().splitlines() if line.strip()]


def specifiers(requirements) -> dict:
  """{name: the version specifiers of `requirements` on it}."""
  specs = {}
  for req in requirements:
    specs.setdefault(norm(req.name), []).append(req.specifier)
  return specs


def meets(version, specs) -> bool:
  """Whether the node's `version` (None: any) meets every specifier in `specs`."""
  return version is None or all(s.contains(version, prereleases=True) for s in specs)


def constraints(folder: str, have_file: str) -> None:
  specs = specifiers(roots(folder))
  lines = []
  for name, version in sorted(node_packages(have_file).items()):
    try:
      if version and meets(version, specs.get(name, [])):
        lines.append(f"{name}=={Version(version).public}")  # no local label: PyPI has none
    except InvalidVersion:
      continue
  open(os.path.join(folder, "node.txt"), "w").write("".join(f"{line}\n" for line in lines))


def prune(folder: str, have_file: str, pyver: str) -> None:
  have = node_packages(have_file)
  wheels = {}  # name -> (file, its requirements)
  for f in os.listdir(folder):
    if f.endswith(".whl"):
      with zipfile.ZipFile(os.path.join(folder, f)) as z:
        meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        requires = email.message_from_bytes(z.read(meta)).get_all("Requires-Dist") or []
      wheels[norm(f.split("-")[0])] = (f, [Requirement(r) for r in requires])
  env = {"python_version": pyver, "python_full_version": f"{pyver}.0", "os_name": "posix",
         "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
         "implementation_name": "cpython", "platform_python_implementation": "CPython"}

  def applies(req, extras) -> bool:
    return req.marker is None or any(req.marker.evaluate({**env, "extra": e})
                                     for e in ("", *extras))

  top = roots(folder)
  asked = {}  # name -> the extras asked of it anywhere
  for req in top + [r for _, reqs in wheels.values() for r in reqs]:
    asked.setdefault(norm(req.name), set()).update(req.extras)
  # Every requirement on a package from any wheel of the set (one from a wheel that will not
  # be installed can only keep a wheel that was not needed): the node's version meets them all.
  specs = specifiers(top + [r for name, (_, reqs) in wheels.items() for r in reqs
                            if applies(r, asked.get(name, ()))])
  own = {name for name, version in have.items()
         if name in wheels and meets(version, specs.get(name, []))}
  needed, todo = set(), [(req, ()) for req in top]
  while todo:  # from the requirements down, through the packages the node does not have
    req, extras = todo.pop()
    name = norm(req.name)
    if applies(req, extras) and name in wheels and name not in own | needed:
      needed.add(name)
      todo += [(r, tuple(asked.get(name, ()))) for r in wheels[name][1]]
  for name, (f, _) in wheels.items():
    if name not in needed:
      os.remove(os.path.join(folder, f))
  print(", ".join(sorted(own)))


if __name__ == "__main__":
  {"constraints": constraints, "prune": prune}[sys.argv[1]](*sys.argv[2:])
