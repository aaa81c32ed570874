"""PACS tests against a real Orthanc (a package, so its conftest never shadows tests/conftest.py)."""
