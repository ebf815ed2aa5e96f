"""End-to-end tests of ``moltsim validate`` and ``moltsim run`` (scenario files, the runner)."""
