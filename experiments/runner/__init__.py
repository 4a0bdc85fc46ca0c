"""The runner: task wrapper, checks, builders, sweep report (see docs/conventions.md)."""

from experiments.runner import resolvers  # noqa: F401  (registers the resolvers the configs use)
