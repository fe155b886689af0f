"""One module per ``npc-frames`` subcommand: ``register(subparsers)`` and ``run(args)``."""
