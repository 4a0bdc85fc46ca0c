"""Run several ``run.py`` command lines in ONE interpreter (imports paid once) and report each.

``python tests/runner/cli_driver.py '<json list of argv lists>'`` prints one JSON line after
``CASES:``: exit code and stderr per command line. The commands go through ``run.py``'s own
entry point (``guarded(main)``), as ``python run.py ...`` does
(``runpy`` runs the file as ``__main__``).
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "CASES:"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from hydra.core.global_hydra import GlobalHydra

    results = []
    for argv in json.loads(sys.argv[1]):
        sys.argv = [str(ROOT / "run.py"), *argv]
        GlobalHydra.instance().clear()
        err = io.StringIO()
        code = 0
        with contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(ROOT / "run.py"), run_name="__main__")
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                code = 1
                err.write(traceback.format_exc())
        results.append({"argv": argv, "code": code, "stderr": err.getvalue()})
    print(MARKER + json.dumps(results))


if __name__ == "__main__":
    main()
