"""Engines behind the CLI commands: inference (shared by predict and eval), predict, eval, train."""
