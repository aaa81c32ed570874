"""One module per `ptx-annotate` subcommand, each with ``register(subparsers)``."""
