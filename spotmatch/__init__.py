"""The `spotmatch` command: one entry point whose subcommands start each part of the system."""
