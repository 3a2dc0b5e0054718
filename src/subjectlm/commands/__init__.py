"""One module per `subjectlm` subcommand: `add_parser(subparsers)` and `run(args) -> int`."""
