"""``qwallet bench``: throughput, open-loop latency and the database ceiling, in one run.

Modules: ``loadgen`` (the HTTP load generator, run in its own process), ``database`` (create,
seed, verify, drop), ``pgbench`` (the same SQL functions without HTTP), ``runner`` (the
orchestration), ``report`` (``docs/benchmarks.md`` and its charts), ``command`` (the CLI).
"""
