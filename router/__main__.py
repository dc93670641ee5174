"""`python -m router`: the same as `spotmatch router` (without importing the other
subcommands, so the router never loads shard code)."""

import argparse
import sys

from spotmatch import router_cli
from tools.hot_path import refuse_stale_build

refuse_stale_build()

parser = argparse.ArgumentParser(prog="spotmatch")
router_cli.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(["router", *sys.argv[1:]])
raise SystemExit(args.handler(args))
