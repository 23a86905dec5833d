"""Remote commands (docs/commands.md): the aggregator signs, the agent checks, runs and reports.

``actions`` holds the allowlist (ready-made and ``[[action]]`` tables) and turns arguments into an
argv; ``verify`` checks a command in the documented order; ``nonces`` keeps the nonces on disk;
``runner`` runs an argv with a timeout and bounded output; ``report`` posts results; ``poll``
long-polls for commands; ``service`` ties them together for the daemon. Only ``actions`` and
``service`` are imported by an agent whose commands are off.
"""
