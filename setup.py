"""Automatic package discovery across the three source folders, mapped into one namespace.

``ptx_annotator/`` is the core, ``plugins/`` installs as ``ptx_annotator.plugins`` and
``training/`` as ``ptx_annotator.training`` (no generic top-level names land in site-packages).
Every folder with an ``__init__.py`` under them is a package: nothing is listed by hand, so a new
subpackage cannot be left out of the wheel. Everything else lives in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {"ptx_annotator": "ptx_annotator", "ptx_annotator.plugins": "plugins",
         "ptx_annotator.training": "training"}

packages = []
package_dir = {}
for name, folder in ROOTS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=sorted(set(packages)), package_dir=package_dir)
