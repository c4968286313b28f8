"""The build step that pyproject.toml cannot say: the repository's `specs/` (their source, which
the project and its lock file use) are copied into the package as `lazyspec/bundled_specs/`, so
that `pip install lazyspec` gets them and `lazyspec infer resnet18 ...` runs by name. Everything
else is configured in pyproject.toml. MANIFEST.in puts `specs/` in the sdist, so a wheel built
from it has them too; tests/test_packaging.py checks both."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SPECS = Path(__file__).resolve().parent / "specs"


class BuildWithSpecs(build_py):
    """build_py, then the bundled specs next to the modules it copied."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads specs/ itself
            return
        target = Path(self.build_lib) / "lazyspec" / "bundled_specs"
        self.mkpath(str(target))
        for spec in sorted(SPECS.glob("*.yaml")):
            self.copy_file(str(spec), str(target / spec.name))


setup(cmdclass={"build_py": BuildWithSpecs})
