"""Python imports this at start-up when this folder is on PYTHONPATH, as it is for every process of the test
suite (tests/conftest.py): it records the programs the process looks up or executes (`program_audit_hook`)."""

import program_audit_hook

program_audit_hook.install_from_environment()
