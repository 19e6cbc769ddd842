"""Imported at start-up by a Python whose PYTHONPATH holds this folder (`conftest.
core_install_env`): the top-level modules named in $ALEXNET_HIDDEN_MODULES cannot be imported
(`sys.modules[name] = None`: `import` raises ModuleNotFoundError and `importlib.util.find_spec`
returns None, as for a package that is not installed), so a command runs as it would in an
install without the extras the test environment has."""

import json
import os
import sys

for _name in json.loads(os.environ.get("ALEXNET_HIDDEN_MODULES", "[]")):
  sys.modules.setdefault(_name, None)  # one already imported at start-up (a .pth's) stays
