"""Where replicas run: one module per target behind the `Target` protocol in `base`."""

# Modules the rest of the harness may import (targets are made through `registry`'s factories; cleanup reaches
# the Docker, Kubernetes and kind ones for what dead runs left; `harness rbac` prints kubernetes_access's Role);
# the others serve these.
# tests/test_architecture.py holds every import from outside the package to this list.
__all__ = [
    "base",
    "cpu_placement",
    "docker",
    "helm",
    "helm_values",
    "kind",
    "kinds",
    "kubernetes",
    "kubernetes_access",
    "kubernetes_api",
    "kubernetes_status",
    "registry",
]
