"""Where replicas run: one module per target behind the `Target` protocol in `base`."""
