"""CLI subcommands; each module has `register(app)` and stays thin: parse options, call the engine, report."""
