"""storage: from a URL to an Optuna storage; the only package that knows database URLs."""
