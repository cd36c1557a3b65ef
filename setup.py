"""The build is configured in pyproject.toml (scikit-build-core + CMake); install with `pip install .`."""
raise SystemExit("tensorsharp builds with scikit-build-core: run `pip install .` (see README.md)")
