"""`python -m shard`: the same as `spotmatch shard` (without importing the other subcommands,
so a shard process never loads router code)."""

import argparse
import sys

from spotmatch import shard_cli
from tools.hot_path import refuse_stale_build

refuse_stale_build()

parser = argparse.ArgumentParser(prog="spotmatch")
shard_cli.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["shard", *sys.argv[1:]])
raise SystemExit(args.handler(args))
