"""Maps the top-level ``shared/`` and ``domains/`` folders into the ``polyrank`` namespace."""

from setuptools import find_packages, setup

ROOTS = {"polyrank.shared": "shared", "polyrank.domains": "domains"}


def _mapped_packages() -> list[str]:
    packages = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return packages


setup(packages=_mapped_packages(), package_dir=ROOTS)
